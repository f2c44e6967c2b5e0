"""What a decision leaves behind: a `models` row, the champion pointer, a Markdown artifact
and a Prefect event (`pixelpipe.model.<decision>`, resource `pixelpipe.model.<dataset>`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from storage.champions import Champion, write_champion
from storage.parquet import write_table
from tasks.registry.candidate import Candidate
from tasks.registry.decide import Verdict, percent
from tasks.runtime import artifact_key

if TYPE_CHECKING:  # TensorFlow: the CLI checks a run id with this module before loading it
    from tasks.registry.evaluate import EvalSet, Scores

EVENT_PREFIX = "pixelpipe.model"


def model_row(
    model: Candidate,
    verdict: Verdict,
    decided_at: datetime,
    *,
    evalset: EvalSet | None = None,
    scores: Scores | None = None,
    champion_run: str | None = None,
    champion: Scores | None = None,
) -> dict[str, Any]:
    """One `models` row: the model, its evaluation, the champion it met, the decision."""
    card = model.card
    return {
        "run_id": model.run_id,
        "model": card.model or "keras",
        "dataset": model.dataset,
        "model_path": model.model_path,
        "sha256": model.sha256,
        "class_names": list(card.class_names),
        "image_size": list(card.image_size),
        "best_epoch": card.best_epoch,
        "best_val_accuracy": card.best_val_accuracy,
        "best_val_loss": card.best_val_loss,
        "eval_split": evalset.split if evalset else None,
        "eval_images": scores.images if scores else None,
        "eval_fingerprint": evalset.fingerprint if evalset else None,
        "eval_accuracy": scores.accuracy if scores else None,
        "eval_loss": scores.loss if scores else None,
        "eval_class_accuracy": scores.class_accuracy if scores else None,
        "champion_run": champion_run,
        "champion_accuracy": champion.accuracy if champion else None,
        "champion_loss": champion.loss if champion else None,
        "champion_class_accuracy": champion.class_accuracy if champion else None,
        "decision": verdict.decision,
        "reason": verdict.reason,
        "decided_at": decided_at,
    }


def write_row(row: dict[str, Any], data_dir: str | None) -> Path:
    """Append the decision to the `models` table (one file per decision, never rewritten)."""
    decided_at: datetime = row["decided_at"]
    part = f"{decided_at:%Y%m%dT%H%M%S%f}-{row['decision']}"
    return write_table(
        "models", [row], run_id=row["run_id"], data_dir=data_dir,
        run_date=decided_at.date(), part=part,
    )  # fmt: skip


def crown(
    model: Candidate,
    verdict: Verdict,
    decided_at: datetime,
    before: Champion | None,
    data_dir: str | None,
    *,
    previous: list[str] | None = None,
    eval_accuracy: float | None = None,
) -> Path:
    """Point the dataset at `model`. The replaced champion goes on the rollback stack unless
    `previous` (a rollback's popped stack) is given."""
    if previous is None:
        previous = list(before.previous) if before else []
        if before and before.run_id != model.run_id:
            previous.append(before.run_id)
    pointer = Champion(
        dataset=model.dataset,
        run_id=model.run_id,
        model_path=model.model_path,
        sha256=model.sha256,
        class_names=list(model.card.class_names),
        decision=verdict.decision,
        decided_at=decided_at.isoformat(),
        eval_accuracy=eval_accuracy,
        previous=previous,
    )
    return write_champion(pointer, data_dir)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def decision_markdown(row: dict[str, Any], champion_after: str) -> str:
    """Side-by-side numbers and the decision, for the Prefect artifact (and humans)."""
    them = row["champion_run"] or "(none)"
    lines = [
        f"# Model decision: {row['dataset']}",
        "",
        f"**{row['decision']}** — {row['reason']}",
        "",
        f"Champion now: `{champion_after}`. Evaluated on `{row['eval_split'] or '–'}/`"
        f" ({row['eval_images'] if row['eval_images'] is not None else '–'} images,"
        f" fingerprint `{(row['eval_fingerprint'] or '–')[:12]}`).",
        "",
        f"| | challenger `{row['run_id']}` | champion `{them}` |",
        "|---|---:|---:|",
        f"| accuracy | {percent(row['eval_accuracy'])} | {percent(row['champion_accuracy'])} |",
        f"| loss | {_num(row['eval_loss'])} | {_num(row['champion_loss'])} |",
    ]
    mine = row["eval_class_accuracy"] or {}
    theirs = row["champion_class_accuracy"] or {}
    for name in sorted(set(mine) | set(theirs)):
        lines.append(f"| {name} | {percent(mine.get(name))} | {percent(theirs.get(name))} |")
    return "\n".join(lines) + "\n"


def publish(row: dict[str, Any], champion_after: str, previous: str | None) -> str | None:
    """The Markdown artifact (key `model-<dataset>`, one version per decision) and the event
    an Automation can match; returns the event id."""
    dataset = row["dataset"]
    create_markdown_artifact(
        decision_markdown(row, champion_after),
        key=artifact_key("model", dataset),
        description=f"Model decision for dataset {dataset}: {row['decision']}",
    )
    payload = {
        key: row[key]
        for key in (
            "run_id", "dataset", "decision", "reason", "eval_split", "eval_images",
            "eval_fingerprint", "eval_accuracy", "eval_loss", "eval_class_accuracy",
            "champion_run", "champion_accuracy", "champion_loss", "champion_class_accuracy",
        )
    }  # fmt: skip
    payload |= {"champion": champion_after, "previous_champion": previous}
    event = emit_event(
        event=f"{EVENT_PREFIX}.{row['decision']}",
        resource={
            "prefect.resource.id": f"{EVENT_PREFIX}.{dataset}",
            "prefect.resource.name": dataset,
        },
        related=[
            {"prefect.resource.id": f"{EVENT_PREFIX}-run.{row['run_id']}",
             "prefect.resource.role": "challenger"},
        ],
        payload=payload,
    )  # fmt: skip
    return str(event.id) if event else None
