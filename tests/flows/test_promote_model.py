"""promote_model, rollback and the registry's CLI on a real Prefect server, with models really
trained on tiny generated data (one training per model, reused by every test)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.promote_model import lock_name, promote_model, rollback_champion
from flows.train_classifier import train_classifier
from storage.champions import read_champion
from storage.errors import ConfigError
from storage.model_card import ModelCard
from storage.parquet import read_table
from tests.tasks.train.test_fit import make_image_dataset

DATASET = "toy"


def make_split_dataset(root: Path, classes: tuple[str, ...] = ("dark", "light")) -> Path:
    """train/ and val/ from the training helper, plus a test/ split of other images."""
    make_image_dataset(root, per_class=24, val=8, classes=classes)
    extra = make_image_dataset(root.parent / f".{root.name}-test", per_class=0, val=10,
                               classes=classes, seed=7)  # fmt: skip
    (extra / "val").rename(root / "test")
    return root


@pytest.fixture(scope="module")
def trained(prefect_harness, tmp_path_factory) -> Path:
    """A data root with three trained runs: `good` (2 epochs), `weak` (one epoch at a learning
    rate that cannot converge) and `other` (a dataset of the same name with other classes)."""
    root = tmp_path_factory.mktemp("registry")
    data = root / "data"
    toy = make_split_dataset(root / "datasets" / DATASET)
    other = make_split_dataset(root / "elsewhere" / DATASET, classes=("dark", "bright"))
    for run, dataset, extra in [
        ("good", toy, {"epochs": 2}),
        ("weak", toy, {"epochs": 1, "learning_rate": 10.0, "optimizer": "sgd"}),
        ("other", other, {"epochs": 1}),
    ]:
        train_classifier(
            params={"dataset_dir": str(dataset), "data_dir": str(data), "run_id": run,
                    "batch_size": 8, **extra}
        )  # fmt: skip
    return data


def install(trained: Path, data_dir: Path, run: str, as_run: str | None = None) -> str:
    """Copy a trained run into this test's data root, under another run id if asked."""
    as_run = as_run or run
    shutil.copytree(trained / "models" / run, data_dir / "models" / as_run)
    card = ModelCard.read(data_dir / "models" / as_run)
    card.run_id = as_run
    card.write(data_dir / "models" / as_run)
    return as_run


def promote(data_dir: Path, run: str, **extra):
    return promote_model(params={"run_id": run, "data_dir": str(data_dir), **extra})


def decisions(data_dir: Path):
    return read_table("models", data_dir=data_dir).sort_values("decided_at")


def test_first_is_champion_a_worse_one_is_kept_a_better_one_promoted(trained, data_dir):
    from prefect.artifacts import Artifact

    for run in ("weak", "good"):
        install(trained, data_dir, run)
    install(trained, data_dir, "weak", "weak-again")
    first = promote(data_dir, "weak")
    assert (first.decision, first.champion_run, first.eval_split) == ("first", "weak", "test")
    assert first.eval_images == 20
    better = promote(data_dir, "good")
    assert better.decision == "promoted" and better.champion_run == "good"
    assert better.previous_champion == "weak"
    assert better.accuracy >= better.champion_accuracy + 0.005
    assert better.champion_accuracy == pytest.approx(first.accuracy)  # the same images
    pointer = Path(better.champion_path).read_bytes()
    worse = promote(data_dir, "weak-again")
    assert worse.decision == "kept" and worse.champion_run == "good"
    assert "below min_improvement" in worse.reason
    assert Path(worse.champion_path).read_bytes() == pointer  # the champion is untouched
    rows = decisions(data_dir)
    assert rows["run_id"].tolist() == ["weak", "good", "weak-again"]
    assert rows["decision"].tolist() == ["first", "promoted", "kept"]
    assert rows["champion_run"].tolist()[1:] == ["weak", "good"]
    assert rows["eval_fingerprint"].nunique() == 1  # all three scored on the same images
    assert rows["dataset"].unique().tolist() == [DATASET]
    kept = rows.iloc[-1]
    assert kept["champion_accuracy"] == pytest.approx(better.accuracy)
    assert dict(kept["champion_class_accuracy"]).keys() == {"dark", "light"}
    assert list(kept["class_names"]) == ["dark", "light"] and len(kept["sha256"]) == 64
    artifact = Artifact.get("model-toy")
    assert "**kept**" in artifact.data and "`weak-again`" in artifact.data


def test_rollback_brings_the_previous_champion_back(trained, data_dir):
    for run in ("weak", "good"):
        install(trained, data_dir, run)
        promote(data_dir, run)
    runner = CliRunner()
    args = ["--dataset", DATASET, "--data-dir", str(data_dir)]
    result = runner.invoke(cli.app, ["rollback", *args, "--reason", "bad night"])
    assert result.exit_code == 0, result.output
    assert "champion of toy: weak (was good)" in result.output
    champion = read_champion(DATASET, data_dir)
    assert champion.run_id == "weak" and champion.decision == "rolled_back"
    assert champion.previous == []
    last = decisions(data_dir).iloc[-1]
    assert (last["run_id"], last["decision"]) == ("weak", "rolled_back")
    assert last["champion_run"] == "good"
    assert last["reason"] == "rolled back from good: bad night"
    with pytest.raises(ConfigError, match="no previous champion"):
        rollback_champion(params={"dataset": DATASET, "data_dir": str(data_dir)})
    listed = runner.invoke(cli.app, ["models", *args])
    assert listed.exit_code == 0, listed.output
    marked = [line for line in listed.output.splitlines() if line.startswith("*")]
    assert len(marked) == 1 and "weak" in marked[0] and "rolled_back" in marked[0]


def test_two_concurrent_promotions_end_with_one_consistent_champion(trained, data_dir):
    from prefect.client.orchestration import get_client

    install(trained, data_dir, "weak")
    promote(data_dir, "weak")
    rivals = [install(trained, data_dir, "good", f"good-{n}") for n in (1, 2)]
    start, results, errors = threading.Barrier(2), {}, []

    def run(name: str) -> None:
        start.wait()
        try:
            results[name] = promote(data_dir, name)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(name,)) for name in rivals]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors and len(results) == 2
    # The second to decide met the first one's promotion: equal models, so it was kept.
    by_decision = {r.decision: r for r in results.values()}
    assert sorted(by_decision) == ["kept", "promoted"]
    winner = by_decision["promoted"].run_id
    assert by_decision["promoted"].previous_champion == "weak"
    champion = read_champion(DATASET, data_dir)
    assert champion.run_id == winner and champion.previous == ["weak"]
    rows = decisions(data_dir).set_index("run_id")
    assert rows.loc[winner, "champion_run"] == "weak"
    loser = next(r for r in rivals if r != winner)
    assert rows.loc[loser, "champion_run"] == winner
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(lock_name(DATASET))
    assert limit.limit == 1 and limit.active_slots == 0


def test_incompatible_classes_are_refused_unless_forced(trained, data_dir):
    install(trained, data_dir, "good")
    install(trained, data_dir, "other")
    promote(data_dir, "good")
    refused = promote(data_dir, "other")
    assert refused.decision == "incompatible" and refused.champion_run == "good"
    assert refused.champion_accuracy is None  # the champion was never scored on it
    result = CliRunner().invoke(
        cli.app, ["promote", "--run-id", "other", "--data-dir", str(data_dir), "--force"]
    )
    assert result.exit_code == 2 and "reason" in result.output
    args = ["promote", "--run-id", "other", "--data-dir", str(data_dir), "--force"]
    forced = CliRunner().invoke(cli.app, [*args, "--reason", "the classes changed on purpose"])
    assert forced.exit_code == 0, forced.output
    assert "other: forced — promoted by hand: the classes changed on purpose" in forced.output
    assert read_champion(DATASET, data_dir).run_id == "other"
    assert decisions(data_dir)["decision"].tolist() == ["first", "incompatible", "forced"]


def test_the_decision_event_is_readable_through_the_prefect_client(trained, data_dir):
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    install(trained, data_dir, "weak", "ev-weak")
    install(trained, data_dir, "good", "ev-good")
    promote(data_dir, "ev-weak")
    result = promote(data_dir, "ev-good")
    assert result.event_id
    found, deadline = [], time.monotonic() + 60  # events are stored asynchronously
    with get_client(sync_client=True) as client:
        while not found and time.monotonic() < deadline:
            page = client.read_events(
                EventFilter(
                    event=EventNameFilter(name=["pixelpipe.model.promoted"]),
                    resource=EventResourceFilter(id=[f"pixelpipe.model.{DATASET}"]),
                ),
                limit=50,
            )
            found = [e for e in page.events if str(e.id) == result.event_id]
            time.sleep(0.2)  # poll interval, bounded by the deadline
    assert found, "the promoted event never reached the server"
    payload = found[0].payload
    assert payload["run_id"] == "ev-good" and payload["champion_run"] == "ev-weak"
    assert payload["eval_accuracy"] == pytest.approx(result.accuracy)
    assert payload["champion"] == "ev-good" and payload["previous_champion"] == "ev-weak"


def test_predict_with_the_champion_names_its_model_run(trained, data_dir):
    install(trained, data_dir, "good")
    promote(data_dir, "good")
    runner = CliRunner()
    dataset = ModelCard.read(data_dir / "models" / "good").dataset_dir
    base = ["predict", "--data-dir", str(data_dir), "--dataset-dir", dataset, "--split", "test"]
    for model, run in (("champion:toy", "p1"), ("champion", "p2")):
        result = runner.invoke(cli.app, [*base, "--model", model, "--run-id", run])
        assert result.exit_code == 0, result.output
        rows = read_table("predictions", data_dir=data_dir, run_id=run)
        assert set(rows["model_run"]) == {"good"} and rows["image"].nunique() == 20
    (data_dir / "models" / "champions" / "second.json").write_text(
        (data_dir / "models" / "champions" / "toy.json").read_text()
    )
    result = runner.invoke(cli.app, [*base, "--model", "champion"])
    assert result.exit_code == 1 and "found: second, toy" in result.output
    result = runner.invoke(cli.app, [*base, "--model", "champion:nothing"])
    assert result.exit_code == 1 and "has no champion yet" in result.output


def test_bad_requests_fail_before_any_decision(trained, data_dir):
    with pytest.raises(ConfigError, match="has no trained model"):
        promote(data_dir, "nope")
    install(trained, data_dir, "good")
    card = ModelCard.read(data_dir / "models" / "good")
    card.status = "training"
    card.write(data_dir / "models" / "good")
    with pytest.raises(ConfigError, match="has not finished training"):
        promote(data_dir, "good")
    assert decisions(data_dir).empty and not (data_dir / "models" / "champions").exists()


def test_the_cli_names_evaluation_task_runs_by_run_id(trained, data_dir):
    """`pixelpipe promote --run-id latest` promotes the newest model; its evaluation task run
    is `evaluate-<run id>`, not a whole file path."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort

    install(trained, data_dir, "weak")
    result = CliRunner().invoke(cli.app, ["promote", "--run-id", "latest"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("weak: first")
    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        names = [t.name for t in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [run.id]})  # type: ignore[arg-type]
        )]  # fmt: skip
    assert names == ["evaluate-weak"]
