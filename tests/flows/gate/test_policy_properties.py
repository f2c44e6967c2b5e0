"""Property-based tests of the gate (Hypothesis): generated path parameters outside the allowed
roots are always refused with a PolicyError, inside ones accepted; run ids and labels never
name a path outside their folder. And the champion a served run asks for is judged where its
pointer leads."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.gate.claims import RunClaim
from flows.gate.policy import PolicyError, ServePolicy
from flows.params import PipelineParams, PredictParams, PrepareParams, TrainParams
from storage.champions import Champion, write_champion
from storage.errors import ConfigError
from storage.layout import Layout, safe_name


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> dict[str, Path]:
    """A data root with an escaping symlink and a symlink loop, an allowed root, an outside
    folder that is also $HOME, and a current folder outside every root."""
    base = tmp_path_factory.mktemp("policy").resolve()
    made = {n: base / n for n in ("data", "photos", "outside", "cwd")}
    for path in made.values():
        path.mkdir()
    (made["data"] / "escape").symlink_to(made["outside"], target_is_directory=True)
    (made["data"] / "loop1").symlink_to(made["data"] / "loop2")
    (made["data"] / "loop2").symlink_to(made["data"] / "loop1")
    saved = os.environ.get("HOME"), Path.cwd()
    os.environ["HOME"] = str(made["outside"])
    os.chdir(made["cwd"])
    yield made
    os.chdir(saved[1])
    if saved[0] is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = saved[0]


def policy_of(place) -> ServePolicy:
    return ServePolicy.of(place["data"], [str(place["photos"])], [])


# One path parameter of each kind, in a stage model and nested in the pipeline's.
USES: list[Callable[[str], object]] = [
    lambda p: PrepareParams(source_dir=p),
    lambda p: PredictParams(inputs=[p, p], weights="imagenet"),
    lambda p: PredictParams(model=p),
    lambda p: TrainParams(weights=p),
    lambda p: TrainParams(data_dir=p),
    lambda p: PipelineParams(dataset_dir=p, train={"weights": p}),
]
uses = st.sampled_from(USES)

# File names: any unicode but '/', NUL and surrogates, never '.' or '..', short enough.
names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    min_size=1, max_size=40,
).filter(lambda s: s not in (".", "..") and len(os.fsencode(s)) <= 255)  # fmt: skip
tails = st.lists(names, max_size=4).map(lambda parts: "/".join(parts))


def under(base: str, tail: str) -> str:
    return f"{base}/{tail}" if tail else base


@st.composite
def outside_paths(draw) -> Callable[[dict], str]:
    """A path that must be refused, as a function of the test's folders."""
    tail = draw(tails)
    kind = draw(st.sampled_from(
        ["outside", "dotdot", "symlink", "tilde", "nul", "long-name", "long-path", "loop",
         "surrogate", "relative"]
    ))  # fmt: skip
    depth = draw(st.integers(1, 4))
    cut = draw(st.integers(0, 20))
    return {
        "outside": lambda p: under(str(p["outside"]), tail),
        "dotdot": lambda p: under(f"{p['data']}/{'x/' * (depth - 1)}{'../' * depth}outside", tail),
        "symlink": lambda p: under(f"{p['data']}/escape", tail),
        "tilde": lambda p: under("~", tail),
        "nul": lambda p: under(f"{p['data']}/{tail[:cut]}\x00{tail[cut:]}", "x"),
        "long-name": lambda p: under(f"{p['data']}/{'n' * (256 + cut)}", tail),
        "long-path": lambda p: under(f"{p['photos']}/{'/'.join(['d' * 200] * (21 + depth))}", tail),
        "loop": lambda p: under(f"{p['data']}/loop1", tail),
        "surrogate": lambda p: under(f"{p['data']}/\ud800{'s' * cut}", tail),
        "relative": lambda p: under("./data", tail),  # from the current folder: outside
    }[kind]


@settings(max_examples=300, deadline=None)
@given(make=outside_paths(), use=uses)
def test_paths_outside_the_roots_are_always_refused_in_one_line(place, make, use):
    value = make(place)
    with pytest.raises(PolicyError) as caught:
        policy_of(place).check(use(value))
    message = str(caught.value)
    assert message.startswith("served run refused by the operator's policy: ")
    assert "\n" not in message and len(message) < 1500


@settings(max_examples=200, deadline=None)
@given(
    root=st.sampled_from(["data", "photos"]),
    tail=tails.filter(lambda t: t.split("/")[0] not in ("escape", "loop1", "loop2")),
    use=uses,
)
def test_paths_inside_the_roots_are_accepted(place, root, tail, use):
    assert policy_of(place).refusals(use(under(str(place[root]), tail))) == []


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=80) | st.from_regex(r"[A-Za-z0-9._-]{1,70}", fullmatch=True))
def test_run_ids_and_labels_never_lead_outside_their_folder(text):
    layout = Layout(Path("/data/root"))
    try:
        name = safe_name(text, "run id")
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    for folder, made in [
        (layout.root / "raw", layout.raw(name)),
        (layout.root / "models", layout.model_dir(name)),
        (layout.root / "reports", layout.report_dir(name)),
        (layout.root / "datasets", layout.dataset(name)),
        (layout.root / "models" / "champions", layout.champion_file(name)),
        (layout.table_dir("predictions") / "run_date=2026-12-04",
         layout.table_file("predictions", name, "2026-12-04", part=name)),
    ]:  # fmt: skip
        resolved = Path(os.path.normpath(made))
        assert resolved.parent == folder and resolved.name not in ("", ".", "..")
    claim = RunClaim(Path("/data/root"), "scrape-images", name)
    assert Path(os.path.normpath(claim.path)).parent == claim.folder


def champion(data_dir: Path, model_path: str) -> None:
    write_champion(
        Champion(
            dataset="fruit", run_id="r1", model_path=model_path, sha256="0" * 64,
            class_names=["a", "b"], decision="promoted", decided_at="2026-12-04T00:00:00+00:00",
        ),
        data_dir,
    )  # fmt: skip


def test_the_served_policy_judges_where_a_champion_pointer_leads(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "models" / "r1").mkdir(parents=True)
    outside.mkdir()
    (data / "models" / "r1" / "best.keras").write_bytes(b"m")
    policy = ServePolicy.of(data, [], [])
    params = PredictParams(data_dir=str(data), model="champion:fruit")
    champion(data, str(data / "models" / "r1" / "best.keras"))
    assert policy.refusals(params) == []
    champion(data, str(outside / "best.keras"))
    [line] = policy.refusals(params)
    assert line.startswith("model 'champion:fruit' cannot be resolved (champion pointer")
    assert "leads outside" in line
