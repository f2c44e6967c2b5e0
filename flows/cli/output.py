"""What each command prints: a flow returns its result model, and these turn it into text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flows.curate_images import CurateResult
    from flows.image_pipeline import PipelineResult
    from flows.predict_batch import PredictResult
    from flows.prepare_dataset import PrepareResult
    from flows.scrape_images import ScrapeResult
    from flows.train_classifier import TrainResult


# (status, words in the reason) -> what fixes it, when a flag or a step does.
SCRAPE_FIXES = [
    ("blocked", ("loopback", "private", "link-local", "not a public", "reserved"),
     "pass --allow-private-networks to allow it"),
    ("too_small", (), "--min-size sets the smallest side kept"),
    ("too_large", (), "--max-bytes raises the limit"),
    ("timeout", (), "--timeout (per request) or --deadline (per image) give more time"),
    ("skipped", ("max_images",), "--max-images raises the cap"),
    ("http_error", ("429", "503"), "the site is throttling: lower --per-host or --concurrency"),
]  # fmt: skip


PREPARE_FIXES = [
    ("capped", (), "--max-per-class raises the cap"),
    ("duplicate", (), "copies of an image kept (near ones: --near-duplicate-distance)"),
    ("excluded_by_curation", (), "flagged by the run given to --exclude-curation"),
    ("corrupt", (), "pixelpipe show dataset_manifest --columns path,status,error"),
    ("conflict", (), "the same image under two classes: see the warning above"),
]  # fmt: skip


def fix_for(status: str, reason: str, fixes: list[tuple[str, tuple[str, ...], str]]) -> str:
    for fixed, words, fix in fixes:
        if fixed == status and (not words or any(w in reason for w in words)):
            return fix
    return ""


def said_once(reason: str, fix: str) -> str:
    """The reason without its `(allow_private_networks is off)` when the fix names that flag:
    the row keeps the setting's name for the tables, the terminal says it once."""
    for flag in re.findall(r"--([a-z-]+)", fix):
        reason = reason.replace(f" ({flag.replace('-', '_')} is off)", "")
    return reason


def status_lines(
    counts: dict[str, int],
    reasons: dict[str, list[tuple[str, int]]],
    fixes: list[tuple[str, tuple[str, ...], str]] = (),
) -> list[str]:
    """One line per status other than ok: its count, its most common reasons and, where a flag
    or a step fixes it, which: `blocked 1: 127.0.0.1 is a loopback address — pass ...`."""
    lines = []
    for status, n in counts.items():
        if status == "ok" or not n:
            continue
        found = reasons.get(status, [])
        fix = next((f for reason, _ in found if (f := fix_for(status, reason, fixes))), "")
        fix = fix or fix_for(status, "", fixes)
        why = "; ".join(
            said_once(reason, fix) + (f" ({count})" if len(found) > 1 else "")
            for reason, count in found
            if reason
        )
        lines.append(f"  {status} {n}" + (f": {why}" if why else "") + (f" — {fix}" if fix else ""))
    return lines


def scrape_lines(result: ScrapeResult) -> list[str]:
    """What a scrape found and, per status other than ok, why and what fixes it."""
    shown = ", ".join(f"{status} {n}" for status, n in result.counts.items() if n)
    head = (
        f"scrape {result.run_id} [{result.label}]: {result.pages} page(s), "
        f"{result.candidates} URL(s) -> {shown or 'nothing'}"
    )
    return [head, *status_lines(result.counts, result.reasons, SCRAPE_FIXES)]


def scrape_summary(result: ScrapeResult) -> str:
    head, *reasons = scrape_lines(result)
    return "\n".join([f"{head}; images in {result.raw_dir}", *reasons])


def prepare_summary(result: PrepareResult) -> list[str]:
    lines = [f"dataset {result.dataset_dir} ({', '.join(result.class_names)})"]
    for split, per_class in result.counts.items():
        lines.append(f"  {split:<5} " + "  ".join(f"{c}={n}" for c, n in per_class.items()))
    lines += prepare_left_out(result)
    lines.append(f"manifest {result.manifest_path} (run {result.run_id})")
    return lines


def prepare_left_out(result: PrepareResult) -> list[str]:
    """How many images prepare rendered and what it left out, with the option that decides."""
    left_out = sum(result.skipped.values())
    return [
        f"rendered {result.rendered}, reused {result.reused}, left out {left_out}",
        *status_lines(result.skipped, {}, PREPARE_FIXES),
    ]


def curate_summary(result: CurateResult) -> str:
    checks = "; ".join(
        f"{check}: " + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items()))
        for check, verdicts in result.counts.items()
    )
    return f"curate {result.run_id}: {result.images} images; {checks}"


def predict_table(result: PredictResult, rows: int = 10) -> str:
    """The short text summary `pixelpipe predict` prints."""
    targets = (
        f"; {result.target_hits} with a target ({', '.join(result.targets)})"
        if result.targets
        else ""
    )
    lines = [
        f"run {result.run_id}  model {result.model}",
        f"preprocessing {result.preprocessing}",
        *predict_counts(result, targets),
        f"{'image':<40} {'top-1 label':<24} {'prob':>6}" + ("  target" if targets else ""),
    ]
    for r in result.top[:rows]:
        name = Path(r["image"]).name
        name = name if len(name) <= 40 else "..." + name[-37:]
        target = ("  yes" if r["is_target"] else "") if targets else ""
        lines.append(f"{name:<40} {r['label'][:24]:<24} {r['probability']:>6.3f}{target}")
    if result.engine:  # backend=openvino: the IR used and int8's accuracy against fp32
        # deferred: OpenVINO is an optional extra (pip install -e ".[openvino]")
        from tasks.predict.engines.openvino import OpenVinoInfo, describe

        lines.append(
            f"openvino {result.engine['precision']}: " + describe(OpenVinoInfo(**result.engine))
        )
    lines.append(f"predictions: {result.predictions_path}")
    return "\n".join(lines)


def predict_counts(result: PredictResult, targets: str = "") -> list[str]:
    """How many images were predicted, and the first few that were not ok by name."""
    return [
        f"{result.images} images: {result.ok} ok, {result.corrupt} corrupt, {result.missing}"
        f" missing{targets}; {result.images_per_second} img/s",
        *failed_lines(result.failed, result.corrupt + result.missing),
    ]


def failed_lines(failed: list[dict], total: int, shown: int = 3) -> list[str]:
    """The first few images that were not ok, by name and why, then how many more."""
    lines = [
        f"  {row['status']}: {Path(row['image']).name}"
        + (f" ({row['error']})" if row["error"] else "")
        for row in failed[:shown]
    ]
    if total > len(lines) and lines:
        lines.append(f"  and {total - len(lines)} more (pixelpipe show predictions --run-id ...)")
    return lines


def num(value: float | None, digits: int = 3) -> str:
    """A metric for the eye (the tables keep full precision): 0.9305555820465088 -> 0.931."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def train_summary(r: TrainResult) -> list[str]:
    return [
        f"run {r.run_id}: {r.model}, {r.epochs_run} epochs, best epoch {r.best_epoch} "
        f"val_accuracy {num(r.best_val_accuracy)} (evaluated {num(r.evaluated_val_accuracy)})",
        f"model {r.model_path}",
        f"card  {r.model_card_path}",
        f"history {r.history_path}",
    ]


def pipeline_summary(result: PipelineResult) -> list[str]:
    """What `pixelpipe run` prints: the run, what each stage left out and why (as the stage's
    own command says it), the accuracy, and where everything went."""
    lines = [f"run {result.run_id}: {', '.join(result.stages_run)}"]
    for name, why in result.stages_skipped.items():
        lines.append(f"  skipped {name}: {why}")
    for scraped in result.scraped:
        lines += scrape_lines(scraped)
    if result.curated:
        lines.append(curate_summary(result.curated))
    if result.prepared:
        head, *left_out = prepare_left_out(result.prepared)
        lines += [f"prepare {result.run_id} [{result.prepared.dataset}]: {head}", *left_out]
    for predicted in result.predicted:  # the model is named below (predicted with ...)
        head, *failed = predict_counts(predicted)
        lines += [f"predict {predicted.run_id}: {head}", *failed]
    if result.best_val_accuracy is not None:
        lines.append(f"validation accuracy: {result.best_val_accuracy:.3f}")
    if result.decision:
        lines.append(f"model decision: {result.decision} ({result.decision_reason})")
        lines.append(f"predicted with the champion, run {result.champion_run}")
    lines += [f"  {path}" for path in result.paths()]
    if result.report_path:
        lines.append(f"report: {result.report_path}")
    return lines
