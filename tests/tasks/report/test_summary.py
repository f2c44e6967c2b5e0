"""The report's summary card: headline accuracy, decision, images per stage, what to look at."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from storage.parquet import read_table, write_table
from storage.schemas import STATUSES, TABLES
from tasks.report import stats as S
from tasks.report.document import Text
from tasks.report.sections import RunData
from tasks.report.summary import NEXT_RULES, headline, next_step, summary_card
from tests.tasks.report.test_decision import row as model_row


def frame(table: str, rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[f.name for f in TABLES[table]])


def scrape(**statuses: int) -> pd.DataFrame:
    rows = [
        {"page_url": "http://p.test/", "url": f"http://i.test/{s}{i}", "label": "a", "status": s}
        for s, n in statuses.items()
        for i in range(n)
    ]
    return frame("scrape_manifest", rows)


def dataset(splits: dict[str, dict[str, int]], **others: int) -> pd.DataFrame:
    """`{label: {split: images}}` ok rows (path /d/<split>/<label>/<i>.png), plus other statuses."""
    rows = [
        {"path": f"/d/{split}/{label}/{i}.png", "label": label, "split": split, "status": "ok"}
        for label, per in splits.items()
        for split, n in per.items()
        for i in range(n)
    ]
    rows += [
        {"label": "a", "source_path": f"/raw/{s}{i}", "status": s, "error": f"{s} error"}
        for s, n in others.items()
        for i in range(n)
    ]
    return frame("dataset_manifest", rows)


def predictions(right: dict[str, int], wrong: dict[str, int], split: str = "val") -> pd.DataFrame:
    """Rank-1 predictions of the dataset's `split` images of each label: `right[label]` of
    them get their own label, the next `wrong[label]` the other label."""
    rows = []
    for label in right:
        other = next(x for x in right if x != label)
        for i in range(right[label] + wrong[label]):
            said = label if i < right[label] else other
            rows.append({"model": "m", "image": f"/d/{split}/{label}/{i}.png", "rank": 1,
                         "label": said, "probability": 0.9, "status": "ok"})  # fmt: skip
    return frame("predictions", rows)


def run(**parts) -> RunData:
    empty = {t: frame(t, []) for t in TABLES}
    return RunData(
        scrape=parts.get("scrape", empty["scrape_manifest"]),
        dataset=parts.get("dataset", empty["dataset_manifest"]),
        epochs=parts.get("epochs", empty["epoch_history"]),
        batches=empty["batch_history"],
        predictions=parts.get("predictions", empty["predictions"]),
        card=parts.get("card"),
        model_dir=Path("/nowhere"),
        models=parts.get("models", empty["models"]),
        curation=parts.get("curation", empty["curation"]),
    )


def card_of(data: RunData) -> tuple[dict[str, str], str, list[Text]]:
    card = summary_card(data)
    texts = [b for b in card.blocks if isinstance(b, Text)]
    return dict(card.facts), texts[0].text.removeprefix("**Next:** "), texts


def test_every_status_of_the_vocabularies_is_ok_skipped_or_failed():
    vocabulary = {s for statuses in STATUSES.values() for s in statuses}
    assert vocabulary - {"ok"} <= S.SKIPPED | S.FAILED
    assert not S.SKIPPED & S.FAILED
    assert {S.outcome(s) for s in ("too_small", "duplicate", "skipped", "capped")} == {"skipped"}
    assert {S.outcome(s) for s in ("http_error", "timeout", "corrupt", "missing")} == {"failed"}
    assert S.outcome("a_status_nobody_placed") == "failed"


def test_thumbnails_too_small_by_design_are_skipped_not_failed():
    data = run(scrape=scrape(ok=120, too_small=104, http_error=3))
    facts, step, texts = card_of(data)
    assert facts["scraped URLs"] == "120 stored · 104 skipped · 3 failed"
    assert not step.startswith("3 of")  # 3 of 123 tried is under FAILURE_SHARE
    assert texts[-1].small and "`too_small` 104" in texts[-1].text
    assert "`http_error` 3" in texts[-1].text.split("*failed*")[1]


def test_the_held_out_split_is_test_when_the_dataset_has_one():
    splits = {"a": {"train": 8, "val": 4, "test": 5}, "b": {"train": 8, "val": 4, "test": 5}}
    data = run(
        dataset=dataset(splits),
        predictions=pd.concat(
            [
                predictions({"a": 4, "b": 4}, {"a": 0, "b": 0}, "val"),
                predictions({"a": 4, "b": 3}, {"a": 1, "b": 2}, "test"),
            ]
        ),
        card={"class_names": ["a", "b"], "evaluated_val_accuracy": 1.0},
    )
    facts, step, _ = card_of(data)
    assert facts["accuracy (test/)"] == "70.0% of 10 images"
    assert facts["prepared"] == "16 train · 8 val · 10 test"
    assert facts["predicted"] == "18 images"
    assert step == "the weakest class is b (60.0% right on test/): see Training"


def test_without_test_split_or_predictions_the_card_falls_back_to_val():
    data = run(dataset=dataset({"a": {"train": 4, "val": 2}}), card={"class_names": ["a", "b"]})
    data.card["evaluated_val_accuracy"] = 0.9305555820465088
    assert card_of(data)[0]["accuracy (val/)"] == "93.1%"  # rounded; full value in the card


def test_the_registry_decision_leads_and_a_kept_champion_names_the_worse_class(data_dir):
    write_table("models", [model_row(eval_accuracy=0.9)], run_id="night-2")
    data = run(models=read_table("models", run_id="night-2"))
    facts, step, _ = card_of(data)
    assert facts["accuracy (test/)"] == "90.0% of 20 images"
    assert facts["model decision"] == "kept (champion 95.0%)"
    assert step == (
        "the champion was kept: this run's model was worse on class light (10.0% vs 100.0%):"
        " see Model decision"
    )


def test_accuracy_near_chance_asks_for_more_data_or_epochs():
    splits = {"a": {"train": 10, "val": 10}, "b": {"train": 10, "val": 10}}
    data = run(
        dataset=dataset(splits),
        predictions=predictions({"a": 6, "b": 5}, {"a": 4, "b": 5}),
        card={"class_names": ["a", "b"]},
    )
    step = card_of(data)[1]
    assert step.startswith("accuracy is near chance (55.0% on val/;")
    assert "scores 50.0%): more data or epochs" in step
    better = run(
        dataset=dataset(splits),
        predictions=predictions({"a": 7, "b": 6}, {"a": 3, "b": 4}),  # 65%: not near chance
        card={"class_names": ["a", "b"]},
    )
    assert not card_of(better)[1].startswith("accuracy is near chance")


def test_near_duplicate_conflicts_come_before_the_accuracy():
    splits = {"a": {"train": 10, "val": 10}, "b": {"train": 10, "val": 10}}
    conflicts = dataset(splits, conflict=12)
    conflicts.loc[conflicts["status"] == "conflict", "error"] = "near-duplicate of /raw/b/1.png"
    data = run(
        dataset=conflicts,
        predictions=predictions({"a": 5, "b": 5}, {"a": 5, "b": 5}),
        card={"class_names": ["a", "b"]},
    )
    assert card_of(data)[1].startswith("12 near-duplicate conflicts")
    assert card_of(data)[1].endswith("see Dataset health")


def test_many_real_failures_come_first():
    data = run(scrape=scrape(ok=10, timeout=3, http_error=1, too_small=50))
    assert card_of(data)[1] == "4 of 64 URLs failed (timeout 3, http_error 1): see Scrape"


def test_a_run_with_nothing_wrong_says_nothing_stands_out():
    splits = {"a": {"train": 4, "val": 2}, "b": {"train": 4, "val": 2}}
    data = run(
        dataset=dataset(splits),
        predictions=predictions({"a": 2, "b": 2}, {"a": 0, "b": 0}),
        card={"class_names": ["a", "b"]},
    )
    assert card_of(data)[1].startswith("nothing stands out")
    assert len(card_of(data)[2]) == 1  # no skips or failures: no legend


def test_each_rule_speaks_only_when_it_has_something():
    quiet = run(scrape=scrape(ok=3))
    assert [rule(quiet, headline(quiet)) for rule in NEXT_RULES] == [None] * len(NEXT_RULES)
    assert next_step(quiet, headline(quiet)).startswith("nothing stands out")
