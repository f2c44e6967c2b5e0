"""The served-run policy: which paths and Dask addresses a run started from a deployment may use."""

from __future__ import annotations

import os

import pytest
from prefect import flow

from flows.gate.policy import (
    DASK_ENV,
    ROOTS_ENV,
    PolicyError,
    ServePolicy,
    enforce_policy,
    normalize_dask,
    refuse_env_overrides,
)
from flows.params import PipelineParams, PredictParams, PrepareParams, ScrapeParams, TrainParams
from flows.params.base import installed
from storage.errors import ConfigError

PAGE = ["http://gallery.invalid/"]
# runner=dask validates only where prefect-dask (the dask extra) is installed.
needs_dask = pytest.mark.skipif(not installed("prefect_dask"), reason="needs the dask extra")


@pytest.fixture
def roots(tmp_path):
    """A data root, a second allowed root, and a folder outside both."""
    made = {name: tmp_path / name for name in ("data", "photos", "outside", "data2")}
    for path in made.values():
        path.mkdir()
    return made


@pytest.fixture
def policy(roots):
    return ServePolicy.of(roots["data"], [str(roots["photos"])], ["tcp://10.0.0.5:8786"])


def refused(policy: ServePolicy, params) -> list[str]:
    return policy.refusals(params)


def test_paths_under_an_allowed_root_pass_and_others_are_refused(policy, roots):
    inside = PredictParams(
        data_dir=str(roots["data"]),
        inputs=[str(roots["photos"] / "a.jpg"), str(roots["data"] / "raw")],
        model=str(roots["data"] / "models" / "r1" / "best.keras"),
        weights=None,
    )
    assert refused(policy, inside) == []
    outside = PredictParams(
        data_dir=str(roots["outside"]),
        inputs=[str(roots["photos"]), str(roots["outside"] / "b.jpg")],
        weights=str(roots["outside"] / "w.h5"),
    )
    assert refused(policy, outside) == [
        f"data_dir {str(roots['outside'])!r} is outside the allowed roots",
        f"inputs {str(roots['outside'] / 'b.jpg')!r} is outside the allowed roots",
        f"weights {str(roots['outside'] / 'w.h5')!r} is outside the allowed roots",
    ]


def test_a_sibling_whose_name_starts_like_a_root_is_outside(policy, roots):
    # /tmp/x/data2 starts with the characters of /tmp/x/data but is another folder.
    assert refused(policy, PrepareParams(source_dir=str(roots["data2"]))) == [
        f"source_dir {str(roots['data2'])!r} is outside the allowed roots"
    ]


def test_dot_dot_is_resolved_before_comparing(policy, roots):
    escape = str(roots["data"] / ".." / "outside" / "x")
    assert refused(policy, PrepareParams(source_dir=escape)) == [
        f"source_dir {escape!r} is outside the allowed roots"
    ]
    back_inside = str(roots["outside"] / ".." / "photos")
    assert refused(policy, PrepareParams(source_dir=back_inside)) == []


def test_a_symlink_inside_a_root_that_points_outside_is_refused(policy, roots):
    link = roots["photos"] / "escape"
    link.symlink_to(roots["outside"], target_is_directory=True)
    assert refused(policy, TrainParams(dataset_dir=str(link / "ds"))) == [
        f"dataset_dir {str(link / 'ds')!r} is outside the allowed roots"
    ]
    # ...and a symlink outside that points into a root is judged by where it leads.
    back = roots["outside"] / "to-photos"
    back.symlink_to(roots["photos"], target_is_directory=True)
    assert refused(policy, TrainParams(dataset_dir=str(back))) == []


def test_relative_paths_are_resolved_from_the_current_folder(policy, roots, monkeypatch):
    monkeypatch.chdir(roots["outside"])
    assert refused(policy, PrepareParams(source_dir="raw")) == [
        "source_dir 'raw' is outside the allowed roots"
    ]
    monkeypatch.chdir(roots["data"])
    assert refused(policy, PrepareParams(source_dir="raw")) == []


def test_a_tilde_path_must_be_allowed_both_expanded_and_literal(policy, roots, monkeypatch):
    monkeypatch.setenv("HOME", str(roots["photos"]))
    monkeypatch.chdir(roots["data"])  # the literal folder '~' would be data/~: allowed
    assert refused(policy, PrepareParams(source_dir="~/pics")) == []
    monkeypatch.chdir(roots["outside"])
    assert refused(policy, PrepareParams(source_dir="~/pics")) == [
        "source_dir '~/pics' is outside the allowed roots"
    ]


def test_weights_and_model_names_that_are_not_files_pass(policy, roots, monkeypatch):
    monkeypatch.chdir(roots["outside"])
    for weights in ("imagenet", None, "none", "random"):
        assert refused(policy, PredictParams(model="resnet50", weights=weights)) == []
    # A train run id is looked up under the run's data root (data_dir is checked itself).
    assert refused(policy, PredictParams(data_dir=str(roots["data"]), model="r1")) == []
    # A choice list (the architecture to train) is never a path.
    assert refused(policy, TrainParams(model="small_cnn", weights="imagenet")) == []
    (roots["outside"] / "r1").mkdir()  # a relative folder that exists wins, as in predict
    assert refused(policy, PredictParams(model="r1")) == ["model 'r1' is outside the allowed roots"]


@needs_dask
def test_dask_addresses_must_be_on_the_list(policy):
    ok = ScrapeParams(pages=PAGE, label="x", runner="dask", dask_address="TCP://10.0.0.5:8786")
    assert refused(policy, ok) == []
    bad = ScrapeParams(pages=PAGE, label="x", runner="dask", dask_address="tcp://10.0.0.6:8786")
    assert refused(policy, bad) == [
        "dask_address 'tcp://10.0.0.6:8786' is not an allowed Dask scheduler"
    ]
    port = ScrapeParams(pages=PAGE, label="x", runner="dask", dask_address="10.0.0.5:8787")
    assert refused(policy, port) == [
        "dask_address '10.0.0.5:8787' is not an allowed Dask scheduler"
    ]
    local = ScrapeParams(pages=PAGE, label="x", runner="dask")  # a LocalCluster: no address
    assert refused(policy, local) == []


@needs_dask
def test_the_pipeline_is_checked_stage_by_stage(policy, roots):
    params = PipelineParams(
        sources=["a=http://gallery.invalid/"],
        scrape={"runner": "dask", "dask_address": "tcp://127.0.0.1:9"},
        train={"weights": str(roots["outside"] / "w.h5")},
        imagenet_weights=str(roots["outside"] / "r.h5"),
        predict={"inputs": [str(roots["photos"])]},
    )
    assert refused(policy, params) == [
        f"imagenet_weights {str(roots['outside'] / 'r.h5')!r} is outside the allowed roots",
        f"train.weights {str(roots['outside'] / 'w.h5')!r} is outside the allowed roots",
        "scrape.dask_address 'tcp://127.0.0.1:9' is not an allowed Dask scheduler",
    ]


@needs_dask
def test_check_names_every_refusal_and_how_to_allow_it(policy, roots):
    params = ScrapeParams(
        pages=PAGE, label="x", data_dir=str(roots["outside"]), runner="dask",
        dask_address="tcp://127.0.0.1:9",
    )  # fmt: skip
    with pytest.raises(PolicyError) as caught:
        policy.check(params)
    message = str(caught.value)
    assert message.startswith("served run refused by the operator's policy: data_dir")
    assert "'tcp://127.0.0.1:9' is not an allowed Dask scheduler" in message
    assert "--allow-root" in message and ROOTS_ENV in message and DASK_ENV in message
    assert isinstance(caught.value, ConfigError)


@needs_dask
def test_the_default_policy_is_the_data_root_and_no_dask(roots):
    policy = ServePolicy.from_env({"PIXELPIPE_DATA_DIR": str(roots["data"])})
    assert policy.roots == (roots["data"].resolve(),) and policy.dask == frozenset()
    params = ScrapeParams(pages=PAGE, label="x", runner="dask", dask_address="tcp://10.0.0.5:1")
    assert refused(policy, params) == [
        "dask_address 'tcp://10.0.0.5:1' is not an allowed Dask scheduler"
    ]


def test_the_environment_carries_the_policy_there_and_back(policy, roots):
    env = policy.environ()
    assert env == {
        "PIXELPIPE_DATA_DIR": str(roots["data"].resolve()),
        ROOTS_ENV: str(roots["photos"].resolve()),
        DASK_ENV: "tcp://10.0.0.5:8786",
    }
    assert ServePolicy.from_env(env) == policy


def test_bad_lists_fail_when_the_policy_is_built(roots):
    with pytest.raises(ConfigError, match="must be an absolute path"):
        ServePolicy.of(roots["data"], ["relative/dir"], [])
    with pytest.raises(ConfigError, match="must look like tcp://host:8786"):
        ServePolicy.of(roots["data"], [], ["tcp://host-without-port"])
    assert normalize_dask("Sched.Example.invalid:8786") == "tcp://sched.example.invalid:8786"
    assert normalize_dask("tcp://[::1]:8786") == "tcp://[::1]:8786"


def test_a_run_may_not_set_the_policy_through_its_job_variables():
    refuse_env_overrides(None)
    refuse_env_overrides({"env": {"OTHER": "1"}, "command": "x"})
    with pytest.raises(PolicyError, match="PIXELPIPE_ALLOWED_DASK, PIXELPIPE_DATA_DIR"):
        refuse_env_overrides({"env": {"PIXELPIPE_DATA_DIR": "/", "PIXELPIPE_ALLOWED_DASK": "x"}})


@flow
def _guarded(params: ScrapeParams) -> str:
    enforce_policy(params)
    return "ran"


def test_ad_hoc_runs_are_free_and_served_runs_are_checked(prefect_harness, roots, monkeypatch):
    monkeypatch.setenv("PIXELPIPE_DATA_DIR", str(roots["data"]))
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    params = ScrapeParams(pages=PAGE, label="x", data_dir=str(roots["outside"]))
    assert _guarded(params) == "ran"  # no deployment: today's freedom
    # Prefect's documented way to make prefect.runtime.deployment.id say "from a deployment".
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", "00000000-0000-0000-0000-000000000001")
    with pytest.raises(PolicyError, match="data_dir"):
        _guarded(params)
    allowed = ScrapeParams(pages=PAGE, label="x", data_dir=str(roots["data"]))
    assert _guarded(allowed) == "ran"
    assert os.environ["PIXELPIPE_DATA_DIR"] == str(roots["data"])
