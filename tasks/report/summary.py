"""The report's summary card: the held-out accuracy, the registry's decision, images per stage,
and the one thing to look at next (the first rule of NEXT_RULES that has something to say)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tasks.report import stats as S
from tasks.report.curation import FLAGS
from tasks.report.decision import percent
from tasks.report.document import Facts, Section, Text
from tasks.report.health import IMBALANCE, balance
from tasks.report.sections import RunData

FAILURE_SHARE = 0.1  # a stage where this share of the items tried failed: look there first
# Accuracy that closes less than this part of the gap from chance to 100% is "near chance".
NEAR_CHANCE = 0.2


@dataclass(frozen=True)
class Headline:
    """The accuracy on the held-out split, and where the number comes from."""

    accuracy: float | None = None
    split: str | None = None
    images: int | None = None
    source: str = ""  # "" (the registry's or predictions' count), "best epoch", ...
    chance: float | None = None  # share of the largest class: what always guessing it scores


def held_out_split(dataset: pd.DataFrame) -> str:
    """test/ when the dataset has one (frozen, never trained or tuned on), else val/."""
    if dataset.empty:
        return "val"
    has_test = ((dataset["status"] == "ok") & (dataset["split"] == "test")).any()
    return "test" if has_test else "val"


def latest_decision(models: pd.DataFrame) -> pd.Series | None:
    return None if models.empty else models.sort_values("decided_at").iloc[-1]


def chance(data: RunData, split: str) -> float | None:
    """The largest class's share of the split's images (else 1 / classes)."""
    counts = S.split_counts(data.dataset) if not data.dataset.empty else {}
    per_label = [c.get(split, 0) for c in counts.values()]
    if sum(per_label):
        return max(per_label) / sum(per_label)
    names = (data.card or {}).get("class_names") or []
    return 1 / len(names) if names else None


def held_out_pairs(data: RunData, split: str) -> tuple[pd.DataFrame, list[str] | None]:
    """(image/true/predicted rows of the trained model on `split`, the model's classes)."""
    names = (data.card or {}).get("class_names")
    return S.validation_pairs(data.predictions, data.dataset, names, split)[1], names


def headline(data: RunData) -> Headline:
    """The registry's evaluation, else the trained model's predictions of the held-out split,
    else the model card's evaluation of val/, else the best epoch's val_accuracy."""
    row = latest_decision(data.models)
    if row is not None and S.none_if_na(row["eval_accuracy"]) is not None:
        split = str(row["eval_split"])
        images = S.none_if_na(row["eval_images"])
        return Headline(float(row["eval_accuracy"]), split, images, "", chance(data, split))
    split = held_out_split(data.dataset)
    pairs, names = held_out_pairs(data, split)
    if not pairs.empty:
        accuracy = S.confusion(pairs, names).accuracy
        return Headline(accuracy, split, len(pairs), "", chance(data, split))
    card = data.card or {}
    if card.get("evaluated_val_accuracy") is not None:
        return Headline(card["evaluated_val_accuracy"], "val", None, "", chance(data, "val"))
    best = S.best_epoch(S.latest_epochs(data.epochs))
    if best is not None and S.none_if_na(best["val_accuracy"]) is not None:
        value = float(best["val_accuracy"])
        return Headline(value, "val", None, "best epoch", chance(data, "val"))
    return Headline()


def _accuracy_fact(h: Headline) -> tuple[str, str]:
    where = f"{h.split}/" + (f", {h.source}" if h.source else "")
    images = f" of {S.plural(int(h.images), 'image')}" if h.images else ""
    return f"accuracy ({where})", percent(h.accuracy) + images


def _decision_fact(row: pd.Series) -> tuple[str, str]:
    champion = S.none_if_na(row["champion_accuracy"])
    them = f" (champion {percent(champion)})" if champion is not None else ""
    return "model decision", f"{row['decision']}{them}"


def _joined(parts: list[tuple[str, int]]) -> str:
    return " · ".join(f"{n} {what}" for what, n in parts if n) or "0"


def stage_facts(data: RunData) -> list[tuple[str, str]]:
    """Images per stage: stored, curated/flagged, prepared per split, predicted."""
    facts = []
    if not data.scrape.empty:
        c = S.outcome_counts(data.scrape)
        parts = [("stored", c["ok"]), ("skipped", c["skipped"]), ("failed", c["failed"])]
        facts.append(("scraped URLs", _joined(parts)))
    if not data.curation.empty:
        flagged = data.curation[data.curation["verdict"].isin(FLAGS)]["path"].nunique()
        checked = data.curation["path"].nunique()
        facts.append(("curated", f"{checked} checked · {flagged} flagged"))
    if not data.dataset.empty:
        counts = S.split_counts(data.dataset)
        per_split = [(s, sum(c.get(s, 0) for c in counts.values())) for s in S.split_order(counts)]
        c = S.outcome_counts(data.dataset)
        facts.append(("prepared", _joined([*per_split, ("failed", c["failed"])])))
    if not data.predictions.empty:
        c = S.outcome_counts(_images(data.predictions))
        facts.append(("predicted", _joined([("images", c["ok"]), ("failed", c["failed"])])))
    return facts


Rule = Callable[[RunData, Headline], str | None]


def _images(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per predicted image (its first: the status is the image's, not the rank's)."""
    return predictions if predictions.empty else predictions.drop_duplicates("image")


def _failures(data: RunData, _: Headline) -> str | None:
    stages = [
        (data.scrape, "URLs", "Scrape"),
        (data.dataset, "files", "Dataset"),
        (_images(data.predictions), "images", "Predictions"),
    ]
    for frame, unit, section in stages:
        failed = {s: n for s, n in S.status_counts(frame).items() if S.outcome(s) == "failed"}
        total = sum(failed.values())
        tried = total + int((frame["status"] == "ok").sum())  # skipped by a rule: not tried
        if total and total >= FAILURE_SHARE * tried:
            reasons = ", ".join(f"{s} {n}" for s, n in failed.items())
            return f"{total} of {len(frame)} {unit} failed ({reasons}): see {section}"
    return None


def _conflicts(data: RunData, _: Headline) -> str | None:
    if data.dataset.empty:
        return None
    conflict = data.dataset[data.dataset["status"] == "conflict"]
    if conflict.empty:
        return None
    near = int(conflict["error"].fillna("").str.startswith("near-duplicate").sum())
    kind = "near-duplicate" if near == len(conflict) else "cross-class"
    return (
        f"{len(conflict)} {kind} conflicts (the same picture under two labels, left out):"
        " see Dataset health"
    )


def _near_chance(_: RunData, h: Headline) -> str | None:
    if h.accuracy is None or h.chance is None:
        return None
    if h.accuracy > h.chance + NEAR_CHANCE * (1 - h.chance):
        return None
    return (
        f"accuracy is near chance ({percent(h.accuracy)} on {h.split}/; always guessing the"
        f" largest class scores {percent(h.chance)}): more data or epochs"
    )


def _class_accuracies(value: Any) -> dict[str, float]:
    """A map column reads back as (key, value) pairs."""
    return dict(value) if isinstance(value, list | tuple | dict) else {}


def _champion_kept(data: RunData, _: Headline) -> str | None:
    row = latest_decision(data.models)
    if row is None or row["decision"] not in ("kept", "incompatible"):
        return None
    if row["decision"] == "incompatible":
        return f"this run's model could not replace the champion: {row['reason']}"
    mine = _class_accuracies(row["eval_class_accuracy"])
    theirs = _class_accuracies(row["champion_class_accuracy"])
    drops = {c: theirs[c] - mine[c] for c in mine.keys() & theirs.keys() if theirs[c] > mine[c]}
    if not drops:
        return f"the champion was kept: {row['reason']}"
    worst = max(sorted(drops), key=drops.get)
    return (
        f"the champion was kept: this run's model was worse on class {worst}"
        f" ({percent(mine[worst])} vs {percent(theirs[worst])}): see Model decision"
    )


def _flagged(data: RunData, _: Headline) -> str | None:
    if data.curation.empty:
        return None
    excluded = not data.dataset.empty and (data.dataset["status"] == "excluded_by_curation").any()
    flagged = data.curation[data.curation["verdict"].isin(FLAGS)]["path"].nunique()
    if not flagged or excluded:
        return None
    return f"{S.plural(flagged, 'image')} flagged by curation are still in the data: see Curation"


def _imbalance(data: RunData, _: Headline) -> str | None:
    counts = balance(data.dataset) if not data.dataset.empty else {}
    if not counts or min(counts.values()) >= IMBALANCE * max(counts.values()):
        return None
    small = min(sorted(counts), key=counts.get)
    return (
        f"classes are imbalanced ({small} has {counts[small]} images, the largest"
        f" {max(counts.values())}): see Dataset health"
    )


def _weakest_class(data: RunData, h: Headline) -> str | None:
    row = latest_decision(data.models)
    per_class = _class_accuracies(row["eval_class_accuracy"]) if row is not None else {}
    section = "Model decision"
    if not per_class:
        pairs, names = held_out_pairs(data, h.split or "val")
        if pairs.empty:
            return None
        rows = S.confusion(pairs, names).per_class()
        per_class = {r["label"]: r["recall"] for r in rows if r["recall"] is not None}
        section = "Training"
    if not per_class or min(per_class.values()) >= 1:
        return None
    weakest = min(sorted(per_class), key=per_class.get)
    return (
        f"the weakest class is {weakest} ({percent(per_class[weakest])} right on"
        f" {h.split or 'val'}/): see {section}"
    )


NEXT_RULES: tuple[Rule, ...] = (
    _failures,
    _conflicts,
    _near_chance,
    _champion_kept,
    _flagged,
    _imbalance,
    _weakest_class,
)


def next_step(data: RunData, h: Headline) -> str:
    """The one thing to look at next: the first rule that finds something."""
    for rule in NEXT_RULES:
        if (found := rule(data, h)) is not None:
            return found
    return (
        f"nothing stands out: failures under {FAILURE_SHARE:.0%} in every stage, no conflicts,"
        " flagged images or weak classes"
    )


def legend(data: RunData) -> str | None:
    """Which statuses of this run count as skipped (expected) and which as failed."""
    counts: dict[str, int] = {}
    for frame in (data.scrape, data.dataset, _images(data.predictions)):
        for status, n in S.status_counts(frame).items():
            counts[status] = counts.get(status, 0) + n
    sides = {
        side: ", ".join(f"`{s}` {n}" for s, n in counts.items() if S.outcome(s) == side)
        for side in ("skipped", "failed")
    }
    if not any(sides.values()):
        return None
    return (
        f"*Skipped* items were left out by a rule, as expected ({sides['skipped'] or 'none'});"
        f" *failed* ones went wrong ({sides['failed'] or 'none'})."
    )


def summary_card(data: RunData) -> Section | None:
    """The card at the top of the report; None for a run with nothing recorded."""
    if data.empty and data.curation.empty and data.models.empty:
        return None
    h = headline(data)
    facts = [_accuracy_fact(h)] if h.accuracy is not None else []
    if (row := latest_decision(data.models)) is not None:
        facts.append(_decision_fact(row))
    facts += stage_facts(data)
    card = Section("summary", "Summary", [Facts(facts), Text(f"**Next:** {next_step(data, h)}")])
    if (words := legend(data)) is not None:
        card.blocks.append(Text(words, small=True))
    return card
