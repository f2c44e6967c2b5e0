"""The report's "Model decision" section: tonight's model against the dataset's champion, side
by side and per class, with the registry's decision and its reason (from the `models` table)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tasks.report.document import Facts, Section, Table, Text


def percent(value: Any) -> str:
    """0.9305 -> "93.1%", as the registry writes it (tasks.registry.decide.percent)."""
    # deferred: tasks.registry.decide imports its evaluator and so TensorFlow, which the CLI's
    # checks (they import the report flow) must not load
    from tasks.registry.decide import percent as registry_percent

    return registry_percent(value)


def _num(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.4f}"


def _accuracies(value: Any) -> dict[str, float]:
    """A map column reads back as (key, value) pairs."""
    return dict(value) if isinstance(value, list | tuple | dict) else {}


def _split(row: pd.Series) -> str:
    """`test/ (20 images)`; a rollback scores nothing."""
    if not isinstance(row["eval_split"], str):
        return "–"
    return f"{row['eval_split']}/ ({row['eval_images']} images)"


def decision_section(models: pd.DataFrame) -> Section | None:
    """The latest decision about this run's model; None when the registry never saw it."""
    if models.empty:
        return None
    row = models.sort_values("decided_at").iloc[-1]
    them = row["champion_run"] if isinstance(row["champion_run"], str) else None
    section = Section("decision", "Model decision")
    section.blocks.append(
        Facts(
            [
                ("decision", str(row["decision"])),
                ("dataset", str(row["dataset"])),
                ("compared with", them or "no champion yet"),
                ("evaluation split", _split(row)),
            ]
        )
    )
    section.blocks.append(Text(f"Why: {row['reason']}"))
    mine, theirs = (_accuracies(row[c]) for c in ("eval_class_accuracy", "champion_class_accuracy"))
    rows: list[list[Any]] = [
        ["accuracy", percent(row["eval_accuracy"]), percent(row["champion_accuracy"])],
        ["loss", _num(row["eval_loss"]), _num(row["champion_loss"])],
    ]
    rows += [
        [f"class {n}", percent(mine.get(n)), percent(theirs.get(n))] for n in sorted(mine | theirs)
    ]
    section.blocks.append(
        Table(
            ["", f"this run ({row['run_id']})", f"champion ({them or '–'})"],
            rows,
            caption="Both models on the same evaluation images",
        )
    )
    return section
