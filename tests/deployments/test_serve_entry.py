import importlib.resources
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from deployments import serve
from flows.cli import commands as cli
from flows.gate.policy import DASK_ENV, ROOTS_ENV, PolicyError
from flows.params import PipelineParams

REPO = Path(__file__).resolve().parents[2]


def prefect_yaml() -> dict:
    """deployments/prefect.yaml as the installed package ships it (package data)."""
    return yaml.safe_load((importlib.resources.files("deployments") / "prefect.yaml").read_text())


def test_without_defaults_every_deployment_runs_on_demand_and_none_has_a_schedule():
    deployments = {d.flow_name: d for d in serve.build_deployments()}
    assert set(deployments) == {name.replace("_", "-") for name in serve.FLOWS}
    assert all(d.name == "on-demand" and "pixelpipe" in d.tags for d in deployments.values())
    # No inactive schedule either: the UI would show its "At 03:00 AM every day" badge.
    assert all(not d.schedules and d.paused is False for d in deployments.values())
    pipeline = deployments["image-pipeline"]
    assert pipeline.entrypoint == "flows.image_pipeline.image_pipeline"
    limited = {name for name, d in deployments.items() if d.concurrency_limit}
    assert limited == {"image-pipeline", "train-classifier"}
    line = serve.schedule_line(None, serve.DEFAULT_CRON, "UTC")
    assert line.startswith("schedule: none (no --params)") and "--params FILE" in line


def test_defaults_file_adds_the_nightly_deployment_and_is_validated(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("sources: [mountain=https://example.com/a]\ntrain: {epochs: 3}\n")
    defaults = serve.pipeline_defaults(cli._load_params_file(good))
    assert defaults == {"sources": ["mountain=https://example.com/a"], "train": {"epochs": 3}}
    deployments = serve.build_deployments(defaults, cron="15 2 * * 1")
    names = [f"{d.flow_name}/{d.name}" for d in deployments]
    assert names[-1] == "image-pipeline/nightly" and "image-pipeline/on-demand" in names
    nightly = deployments[-1]
    assert nightly.parameters == {"params": defaults} and nightly.paused is False
    (schedule,) = nightly.schedules
    assert schedule.active and schedule.schedule.cron == "15 2 * * 1"
    assert all(not d.schedules and not d.parameters for d in deployments[:-1])
    line = serve.schedule_line(defaults, "15 2 * * 1", "UTC")
    assert line == "schedule: image-pipeline/nightly runs at cron '15 2 * * 1' (UTC): active"
    with pytest.raises(ValidationError, match="epochs"):
        serve.pipeline_defaults({"sources": ["a=https://example.com/a"], "train": {"epochs": 0}})


def test_prefect_yaml_declares_the_same_flows_and_valid_pipeline_defaults():
    config = prefect_yaml()
    names = [d["name"] for d in config["deployments"]]
    entrypoints = [d["entrypoint"] for d in config["deployments"]]
    # The served names with `-worker`: every flow on demand, the pipeline nightly too.
    assert names == ["on-demand-worker"] * len(serve.FLOWS) + ["nightly-worker"]
    assert entrypoints == [f"flows/{name}.py:{name}" for name in [*serve.FLOWS, "image_pipeline"]]
    for entrypoint in entrypoints:
        assert (REPO / entrypoint.split(":")[0]).is_file()
    nightly = config["deployments"][-1]
    PipelineParams.model_validate(nightly["parameters"]["params"])
    assert [s["active"] for s in nightly["schedules"]] == [False]  # until sources are real
    assert all("schedules" not in d for d in config["deployments"][:-1])
    limited = [d["entrypoint"] for d in config["deployments"] if "concurrency_limit" in d]
    assert {e.split(":")[1] for e in limited} == serve.ONE_AT_A_TIME
    assert all(d["work_pool"]["name"] == "pixelpipe-process" for d in config["deployments"])
    # The worker's flow runs get the policy's variables (empty: data root only, no Dask).
    for d in config["deployments"]:
        assert d["work_pool"]["job_variables"]["env"] == {ROOTS_ENV: "", DASK_ENV: ""}


def test_serve_policy_options_win_over_the_environment(tmp_path, monkeypatch):
    data, photos, other = tmp_path / "data", tmp_path / "photos", tmp_path / "other"
    monkeypatch.setenv("PIXELPIPE_DATA_DIR", str(data))
    monkeypatch.setenv(ROOTS_ENV, str(other))
    monkeypatch.setenv(DASK_ENV, "tcp://10.0.0.7:8786")
    from_env = serve.serve_policy()
    assert from_env.roots == (data.resolve(), other.resolve())
    assert from_env.dask == {"tcp://10.0.0.7:8786"}
    monkeypatch.chdir(tmp_path)  # relative options are taken from the current folder
    given = serve.serve_policy("data", ["photos"], ["tcp://10.0.0.8:8786"])
    assert given.roots == (data.resolve(), photos.resolve())
    assert given.dask == {"tcp://10.0.0.8:8786"}


def test_serve_refuses_defaults_that_break_its_policy_before_serving(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELPIPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    with pytest.raises(PolicyError, match="dataset_dir '/elsewhere/ds' is outside"):
        serve.serve({"dataset_dir": "/elsewhere/ds"}, policy=serve.serve_policy())


def test_pixelpipe_serve_reports_a_bad_allow_list_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELPIPE_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(cli.app, ["serve", "--allow-dask", "tcp://sched.invalid"])
    assert result.exit_code == 1
    assert "pixelpipe: error: Dask address 'tcp://sched.invalid' must look like" in result.output
    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("dataset_dir: /elsewhere/ds\n")
    result = CliRunner().invoke(cli.app, ["serve", "--params", str(defaults)])
    assert result.exit_code == 1
    assert "served run refused by the operator's policy: dataset_dir" in result.output
