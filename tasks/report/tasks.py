"""Report tasks: read one run's tables and model card, write report.html/report.md, publish."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from storage import files
from storage.layout import Layout
from storage.model_card import model_file
from storage.parquet import read_table
from tasks.report import plots
from tasks.report import stats as S
from tasks.report.curation import curation_section
from tasks.report.decision import decision_section
from tasks.report.document import (
    Section,
    inline_md,
    markdown_section,
    md_escape,
    render_html,
    render_markdown,
)
from tasks.report.filters import filters_section
from tasks.report.health import health_rows, health_section
from tasks.report.sections import (
    RunData,
    Thumbs,
    dataset_section,
    predictions_section,
    read_model_card,
    scrape_section,
    training_section,
)
from tasks.report.summary import summary_card
from tasks.runtime import artifact_key, logger

STAGES = ("scrape", "dataset", "train", "predict")
# Files this stage writes into reports/<run>/; only these are removed before a rewrite (the
# folder may hold other stages' files, e.g. an augment_preview.png from training).
OWN_FILES = (
    "report.html",
    "report.md",
    "scrape_samples.png",
    "dataset_splits.png",
    "augment_samples.png",
    "training_curves.png",
    "training_batches.png",
    "confusion_matrix.png",
    "filters_learned.png",
    "filters_maps.png",
    "filters_classic.png",
)


class BuiltReport(BaseModel):
    """What build_report wrote, plus the small summaries the artifacts need."""

    run_id: str
    title: str
    html_path: str
    markdown_path: str
    sections: list[str]
    plots: list[str]
    facts: dict[str, list[tuple[str, str]]]
    status_rows: list[dict[str, Any]]
    prediction_rows: list[dict[str, Any]]
    notes: list[str]
    health_rows: list[dict[str, Any]] = []
    # The summary card: its facts, the one thing to look at next, and its Markdown.
    summary: list[tuple[str, str]] = []
    card_markdown: str = ""


def load_run(runs: dict[str, str], data_dir: str | None) -> RunData:
    """Every table of the run (each stage may have its own run id) and the model card."""

    def read(table: str, stage: str):
        return read_table(table, data_dir=data_dir, run_id=runs[stage], on_damaged="skip")

    model_dir = Layout.at(data_dir).model_dir(runs["train"])
    card, note = read_model_card(model_dir)
    return RunData(
        scrape=read("scrape_manifest", "scrape"),
        dataset=read("dataset_manifest", "dataset"),
        epochs=read("epoch_history", "train"),
        batches=read("batch_history", "train"),
        predictions=read("predictions", "predict"),
        curation=read("curation", "scrape"),  # curation runs under the scrape's run id
        card=card,
        model_dir=model_dir,
        notes=[note] if note else [],
        models=read("models", "train"),
    )


def augment_grid(data: RunData, folder: Path) -> tuple[Path | None, str | None]:
    """reports/<run>/augment_samples.png, enlarged so its pixels show, and a note when absent."""
    found, note = _augment_source(data, folder)
    if found is None:
        return None, note
    try:
        return plots.enlarge(found, folder / "augment_samples.png"), None
    except plots.IMAGE_ERRORS as e:
        return None, f"The augmented samples {found} could not be read: {e}"


def _augment_source(data: RunData, folder: Path) -> tuple[Path | None, str | None]:
    """The grid made by tasks.augment from the model card's dataset and augmentation when
    possible, else an augment_preview*.png the train stage left behind."""
    card = data.card or {}
    augmentation = (card.get("params") or {}).get("augmentation")
    dataset_dir = card.get("dataset_dir")
    note = None
    if not augmentation:
        note = "Training used no augmentation, so there is no grid of augmented samples."
    elif dataset_dir and Path(dataset_dir).is_dir():
        # deferred: TensorFlow (Keras layers), only for a run that trained with augmentation
        from tasks.train.augment import augment_preview, knobs

        if knobs(augmentation) == knobs(None):
            note = "Training used no augmentation (every knob off), so there is no grid."
        else:
            try:
                out = augment_preview(dataset_dir, augmentation, folder / "augment_samples.png")
                return Path(out), None
            except (OSError, ValueError) as e:  # e.g. the dataset folder has no images
                note = f"Augmented samples could not be made from {dataset_dir}: {e}"
    found = sorted(p for d in (data.model_dir, folder) for p in d.glob("augment_preview*.png"))
    if found:
        return found[0], None
    return None, note or "No augmented samples: no model card with a dataset for this run."


def sample_image(data: RunData) -> Path | None:
    """One readable dataset image for the Filters section (val first), else a scraped one."""
    candidates = []
    for split in ("val", "train", "test"):
        rows = data.dataset[(data.dataset["status"] == "ok") & (data.dataset["split"] == split)]
        candidates += sorted(rows["path"].dropna().astype(str))[:3]
    ok = data.scrape[data.scrape["status"] == "ok"]
    candidates += sorted(ok["path"].dropna().astype(str))[:3]
    return next((Path(p) for p in candidates if Path(p).is_file()), None)


def trained_model(data: RunData) -> Path | None:
    """The run's best.keras: the model card's model_path, else models/<run>/best.keras."""
    named = (data.card or {}).get("model_path")
    for path in ([Path(named)] if named else []) + [model_file(data.model_dir)]:
        if path.suffix == ".keras" and path.is_file():
            return path
    return None


def training_size(data: RunData) -> int:
    """The side the model trains at (the model card's), for the health section's size check;
    224, train_classifier's default, before a model exists."""
    size = (data.card or {}).get("image_size") or [224]
    return int(min(size))


def build_sections(
    data: RunData, folder: Path, sample: int, max_filters: int
) -> tuple[list[Section], list[dict[str, Any]], list[str]]:
    """(sections present, prediction rows for the artifact, notes about what is missing)."""
    notes = list(data.notes)
    grid, grid_note = augment_grid(data, folder) if not data.dataset.empty else (None, None)
    predictions, rows = predictions_section(data.predictions, Thumbs(folder / "thumbs"), sample)
    sections = [
        scrape_section(data.scrape, folder, sample),
        curation_section(data.curation, Thumbs(folder / "thumbs")),
        dataset_section(data.dataset, folder, grid, grid_note),
        health_section(data.dataset, training_size(data), Thumbs(folder / "thumbs")),
        training_section(data, folder),
        decision_section(data.models),
        predictions,
    ]
    image = sample_image(data)
    if image is not None:
        sections.append(filters_section(image, trained_model(data), folder, max_filters))
    elif not data.empty:
        notes.append("No Filters section: no readable image in this run's dataset or scrape.")
    return [s for s in sections if s is not None], rows, notes


def status_rows(data: RunData) -> list[dict[str, Any]]:
    predictions = data.predictions.drop_duplicates("image", keep="first")
    frames = {"scrape": data.scrape, "dataset": data.dataset, "predict": predictions}
    return [
        {"stage": stage, "status": status, "count": n}
        for stage, frame in frames.items()
        for status, n in S.status_counts(frame).items()
    ]


def _clean(folder: Path) -> None:
    for name in OWN_FILES:
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "thumbs", ignore_errors=True)


@task(name="build-report")
def build_report(
    runs: dict[str, str],
    data_dir: str | None,
    title: str,
    sample: int = 8,
    max_filters: int = 16,
    notes: list[str] | None = None,
) -> BuiltReport:
    """Read the run, write reports/<run>/report.html (self-contained) and report.md + PNGs."""
    run_id = runs["report"]
    folder = Layout.ensure(Layout.at(data_dir).report_dir(run_id))
    _clean(folder)
    data = load_run(runs, data_dir)
    sections, prediction_rows, missing = build_sections(data, folder, sample, max_filters)
    others = {stage: runs[stage] for stage in STAGES if runs[stage] != run_id}
    intro = [f"Run {run_id}" + "".join(f"; {s} run {r}" for s, r in others.items()) + "."]
    intro += notes or []
    if not sections:
        intro.append(
            f"Nothing has been recorded for run {run_id} yet: no scraped URLs, dataset,"
            " training history, model card or predictions were found in the warehouse."
        )
    intro += missing
    card = summary_card(data)
    html_path, md_path = folder / "report.html", folder / "report.md"
    files.write_text(html_path, render_html(title, intro, sections, card))
    files.write_text(md_path, render_markdown(title, intro, sections, folder, card))
    plots = [str(p) for s in sections for p in s.figures]
    logger().info("report of run %s: %s (%d sections)", run_id, html_path, len(sections))
    return BuiltReport(
        run_id=run_id,
        title=title,
        html_path=str(html_path),
        markdown_path=str(md_path),
        sections=[s.key for s in sections],
        plots=plots,
        facts={s.title: s.facts for s in sections},
        status_rows=status_rows(data),
        prediction_rows=prediction_rows,
        notes=intro[1:],
        health_rows=health_rows(data.dataset, training_size(data))
        if not data.dataset.empty
        else [],
        summary=card.facts if card else [],
        card_markdown="\n".join(markdown_section(card, folder)) if card else "",
    )


def summary_markdown(built: BuiltReport) -> str:
    """The markdown artifact: the report's summary card, where the files are, and the key
    numbers per section."""
    lines = [f"# {md_escape(built.title)}", ""]
    lines += [built.card_markdown.rstrip(), ""] if built.card_markdown else []
    lines += [f"- HTML report: `{built.html_path}`", f"- Markdown: `{built.markdown_path}`", ""]
    lines += [inline_md(note) + "\n" for note in built.notes]
    for title, facts in built.facts.items():
        lines += [f"## {md_escape(title)}", ""]
        lines += [f"- **{md_escape(k)}**: {md_escape(v)}" for k, v in facts] + [""]
    if built.plots:
        lines += ["## Plots", "", *(f"- `{p}`" for p in built.plots)]
    return "\n".join(lines).rstrip() + "\n"


@task(name="publish-report-artifacts")
def publish_artifacts(built: BuiltReport) -> list[str]:
    """Markdown summary plus status-count and predictions tables on the flow run's page."""
    key = artifact_key("report", built.run_id)
    create_markdown_artifact(
        summary_markdown(built), key=key, description=f"Report of run {built.run_id}"
    )
    keys = [key]
    tables = [
        ("status", built.status_rows, "Rows per status and stage"),
        ("health", built.health_rows, "Dataset health: files per check, with examples"),
        ("predictions", built.prediction_rows, "Top-k predictions of a sample of images"),
    ]
    for suffix, rows, description in tables:
        if rows:
            create_table_artifact(rows, key=f"{key}-{suffix}", description=description)
            keys.append(f"{key}-{suffix}")
    return keys
