"""The report's Scrape, Dataset, Training and Predictions sections, built from one run's tables."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from storage.errors import ConfigError
from storage.model_card import ModelCard, card_file
from tasks.report import plots
from tasks.report import stats as S
from tasks.report.document import Facts, Figure, Heading, Section, Table, Text, Thumb, fmt, short

FAILED_EXAMPLES = 5
# Model card keys shown first, in this order, when present (then params and versions).
CARD_KEYS = (
    "model",
    "status",
    "label_mode",
    "num_classes",
    "image_size",
    "weights",
    "validation",
    "evaluated_val_accuracy",
    "evaluated_val_loss",
    "dataset_dir",
    "model_path",
    "updated_at",
)
CONFIDENT = 5


@dataclass
class RunData:
    """Everything the report reads for one run (frames stay inside the report task)."""

    scrape: pd.DataFrame
    dataset: pd.DataFrame
    epochs: pd.DataFrame
    batches: pd.DataFrame
    predictions: pd.DataFrame
    card: dict[str, Any] | None
    model_dir: Path
    notes: list[str] = field(default_factory=list)
    models: pd.DataFrame = field(default_factory=pd.DataFrame)  # the registry's decisions
    curation: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def empty(self) -> bool:
        frames = (self.scrape, self.dataset, self.epochs, self.batches, self.predictions)
        return self.card is None and all(f.empty for f in frames)


def read_model_card(model_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The model card and, when it exists but cannot be read, a note saying why."""
    if not card_file(model_dir).is_file():
        return None, None
    try:
        return ModelCard.read(model_dir).model_dump(mode="json"), None
    except (OSError, ConfigError) as e:
        return None, f"The model card could not be read: {e}"


class Thumbs:
    """PNG thumbnails under reports/<run>/thumbs/, named by a hash of the source path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, source: str | None, alt: str) -> Thumb | None:
        if not source:
            return None
        name = hashlib.sha1(source.encode()).hexdigest()[:16] + ".png"
        made = self.folder / name  # the same image often shows in several tables
        made = made if made.is_file() else plots.thumbnail(source, made)
        return Thumb(made, alt) if made else None


def _sample_grid(frame: pd.DataFrame, sample: int, path: Path, title: str) -> Path | None:
    """A grid of up to `sample` readable images per label (`frame` has label and path)."""
    images = []
    for label, group in frame.dropna(subset=["path"]).groupby("label", sort=True):
        for source in S.spread_sample(group["path"].astype(str).unique().tolist(), sample):
            if (pixels := plots.load_rgb(source, 128)) is not None:
                images.append((pixels, str(label)))
    return plots.image_grid(images, path, title, ncols=min(sample, 6)) if images else None


def scrape_section(scrape: pd.DataFrame, folder: Path, sample: int) -> Section | None:
    if scrape.empty:
        return None
    counts = S.status_counts(scrape)
    outcomes = S.outcome_counts(scrape)
    failed = scrape[scrape["status"].map(S.outcome) == "failed"]
    section = Section("scrape", "Scrape")
    section.blocks.append(
        Facts(
            [
                ("pages", str(scrape["page_url"].nunique())),
                ("candidate URLs", str(len(scrape))),
                ("downloaded", str(outcomes["ok"])),
                ("skipped (expected)", str(outcomes["skipped"])),
                ("failed", str(outcomes["failed"])),
                ("labels", ", ".join(sorted(scrape["label"].astype(str).unique()))),
            ]
        )
    )
    section.blocks.append(_status_table(counts, "URLs", "URLs by status"))
    if not failed.empty:
        rows = [
            [r.url, r.status, S.none_if_na(r.http_status), S.none_if_na(r.error)]
            for r in failed.head(FAILED_EXAMPLES).itertuples()
        ]
        caption = f"{min(len(failed), FAILED_EXAMPLES)} of {len(failed)} failed URLs"
        section.blocks.append(Table(["URL", "status", "HTTP", "error"], rows, caption))
    ok = scrape[scrape["status"] == "ok"]
    grid = _sample_grid(ok, sample, folder / "scrape_samples.png", "downloaded images")
    if grid:
        section.blocks.append(Figure(grid, f"Up to {sample} downloaded images per label."))
    return section


def _status_table(counts: dict[str, int], unit: str, caption: str) -> Table:
    """Counts per status, each with its outcome: ok, skipped (by a rule) or failed."""
    total = max(sum(counts.values()), 1)
    rows = [
        [status, S.outcome(status), n, f"{100 * n / total:.0f}%"] for status, n in counts.items()
    ]
    return Table(["status", "outcome", unit, "share"], rows, caption)


def dataset_section(
    dataset: pd.DataFrame, folder: Path, augment_grid: Path | None, note: str | None
) -> Section | None:
    if dataset.empty:
        return None
    section = Section("dataset", "Dataset")
    counts = S.split_counts(dataset)
    splits = S.split_order(counts)
    per_split = {s: sum(c.get(s, 0) for c in counts.values()) for s in splits}
    skipped = dataset[dataset["status"] != "ok"]
    outcomes = S.outcome_counts(dataset)
    facts = [("dataset", ", ".join(sorted(dataset["dataset"].astype(str).unique())))]
    facts += [("images", str(sum(per_split.values()))), ("classes", str(len(counts)))]
    facts += [(f"{s} images", str(n)) for s, n in per_split.items()]
    facts += [("skipped (expected)", str(outcomes["skipped"])), ("failed", str(outcomes["failed"]))]
    section.blocks.append(Facts(facts))
    if counts:
        rows = [
            [label, *(c.get(s, 0) for s in splits), sum(c.values())] for label, c in counts.items()
        ]
        rows.append(["all classes", *per_split.values(), sum(per_split.values())])
        section.blocks.append(
            Table(["class", *splits, "total"], rows, "Images per class and split")
        )
        chart = plots.bar_chart(
            counts, folder / "dataset_splits.png", "images per class", "class", "images"
        )
        section.blocks.append(Figure(chart, "Images per class, one bar per split."))
    if not skipped.empty:
        section.blocks.append(
            _status_table(S.status_counts(skipped), "files", "Files left out, by status")
        )
        rows = [
            [r.source_path, r.status, S.none_if_na(r.error)]
            for r in skipped.head(FAILED_EXAMPLES).itertuples()
        ]
        section.blocks.append(
            Table(["file", "reason", "error"], rows, "Examples of files left out")
        )
    if augment_grid:
        section.blocks.append(Figure(augment_grid, "Augmented training samples."))
    elif note:
        section.blocks.append(Text(note))
    return section


def _card_table(card: dict[str, Any]) -> Table:
    rows: list[list[Any]] = []
    for key in CARD_KEYS:
        if card.get(key) is not None:
            rows.append([key, _metric(key, card[key])])
    if card.get("class_names"):
        rows.append(["class_names", ", ".join(map(str, card["class_names"]))])
    for key, value in _flatten(card.get("params") or {}, "params."):
        rows.append([key, value])
    for key, value in _flatten(card.get("versions") or {}, "versions."):
        rows.append([key, value])
    return Table(["setting", "value"], rows, "Model card")


def _metric(key: str, value: Any) -> str:
    """Metrics rounded for reading (the model card keeps every digit); settings as they are."""
    metric = "accuracy" in key or "loss" in key
    return fmt(value) if metric and isinstance(value, float) else _plain(value)


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "×".join(map(str, value)) if all(isinstance(v, int) for v in value) else str(value)
    return f"{value:g}" if isinstance(value, float) else fmt(value)


def _flatten(mapping: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
    items = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        elif value is not None:  # unset options are noise in a table of settings
            items.append((f"{prefix}{key}", _plain(value)))
    return items


def training_section(data: RunData, folder: Path) -> Section | None:
    card = data.card or {}
    model, pairs = S.validation_pairs(data.predictions, data.dataset, card.get("class_names"))
    if data.card is None and data.epochs.empty and pairs.empty:
        return None
    epochs = S.latest_epochs(data.epochs)
    best = S.best_epoch(epochs)
    section = Section("training", "Training")
    facts = [("model", str(card.get("model") or (epochs["model"].iloc[0] if len(epochs) else "–")))]
    facts.append(("epochs run", str(len(epochs))))
    best_epoch = int(best["epoch"]) if best is not None else card.get("best_epoch")
    facts.append(("best epoch", fmt(best_epoch)))
    for key in ("val_accuracy", "val_loss", "accuracy", "loss"):
        value = S.none_if_na(best[key]) if best is not None else card.get(f"best_{key}")
        if value is not None:
            facts.append((f"best {key.replace('_', ' ')}", fmt(float(value))))
    section.blocks.append(Facts(facts))
    if data.card is not None:
        section.blocks.append(_card_table(data.card))
    if not epochs.empty:
        section.blocks += _epoch_blocks(epochs, best_epoch, folder)
    if not data.batches.empty:
        section.blocks.append(_batch_figure(data.batches, folder))
    section.blocks += _confusion_blocks(model, pairs, card.get("class_names"), folder)
    return section


def _epoch_blocks(epochs: pd.DataFrame, best_epoch: int | None, folder: Path) -> list:
    def values(column: str) -> list[float | None]:
        return [S.none_if_na(v) for v in epochs[column].tolist()]

    metrics = {
        "loss": {"train": values("loss"), "validation": values("val_loss")},
        "accuracy": {"train": values("accuracy"), "validation": values("val_accuracy")},
    }
    xs = epochs["epoch"].astype(int).tolist()
    path = plots.epoch_curves(xs, metrics, best_epoch, folder / "training_curves.png")
    columns = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
    rows = [
        [int(r["epoch"]), *(S.none_if_na(r[c]) for c in columns[1:]), fmt(bool(r["is_best"]))]
        for _, r in epochs.iterrows()
    ]
    return [
        Figure(path, "Loss and accuracy per epoch, training and validation; dashed: best epoch."),
        Table([*columns, "best"], rows, "Epoch history"),
    ]


def _batch_figure(batches: pd.DataFrame, folder: Path) -> Figure:
    batches = batches.dropna(subset=["accuracy"]).sort_values(["epoch", "batch"])
    batches = batches.drop_duplicates(["epoch", "batch"], keep="last")
    per_epoch = {
        int(epoch): (group["batch"].astype(int).tolist(), group["accuracy"].astype(float).tolist())
        for epoch, group in batches.groupby("epoch")
    }
    path = plots.batch_curves(per_epoch, folder / "training_batches.png")
    return Figure(path, "Training accuracy batch by batch, one line per epoch.")


def _confusion_blocks(
    model: str | None, pairs: pd.DataFrame, class_names: list[str] | None, folder: Path
) -> list:
    if pairs.empty:
        return [
            Text(
                "No confusion matrix: this run has no rank-1 predictions of validation images"
                " (run predict_batch on the dataset's val split with the same run id)."
            )
        ]
    cm = S.confusion(pairs, class_names)
    path = plots.confusion_plot(
        cm.matrix, cm.true_labels, cm.pred_labels, folder / "confusion_matrix.png"
    )
    rows = [[r["label"], r["images"], r["precision"], r["recall"]] for r in cm.per_class()]
    return [
        Facts([("validation images", str(len(pairs))), ("validation accuracy", fmt(cm.accuracy))]),
        Figure(
            path,
            f"Confusion matrix of {model_name(model or '?')} on"
            f" {S.plural(len(pairs), 'validation image')} ({model}).",
        ),
        Table(["class", "images", "precision", "recall"], rows, "Per-class precision and recall"),
    ]


def predictions_section(
    predictions: pd.DataFrame, thumbs: Thumbs, sample: int
) -> tuple[Section | None, list[dict[str, Any]]]:
    """The section (one part per model that predicted in this run), and the sample's top-k
    rows for the predictions table artifact."""
    if predictions.empty:
        return None, []
    section = Section("predictions", "Predictions")
    # The model that predicted the most images first (in a pipeline run: the trained one).
    per_model = predictions.assign(model=predictions["model"].astype(str))
    sizes = per_model.groupby("model")["image"].nunique()
    models = sorted(sizes.index, key=lambda m: (-sizes[m], m))
    artifact_rows = []
    for model in models:
        if len(models) > 1:
            section.blocks.append(Heading(f"Model {model_name(model)}"))
        frame = predictions[predictions["model"].astype(str) == model]
        blocks, picked = _model_predictions(frame, thumbs, sample)
        section.blocks += blocks
        artifact_rows += [
            {
                "model": model,
                "image": r.image,
                "rank": int(r.rank),
                "label": r.label,
                "probability": round(float(r.probability), 4),
                "is_target": bool(S.none_if_na(r.is_target) or False),
            }
            for r in picked.itertuples()
        ]
    return section, artifact_rows


def _model_predictions(
    predictions: pd.DataFrame, thumbs: Thumbs, sample: int
) -> tuple[list, pd.DataFrame]:
    """One model's blocks, and the rows of the images sampled for the top-k table."""
    counts = S.status_counts(predictions.drop_duplicates(["image"], keep="first"))
    ok = predictions[predictions["status"] == "ok"]
    hits, total, per_target = S.target_hits(predictions)
    identity = str(predictions["model"].iloc[0])
    facts = [("model", model_name(identity))]
    facts += [("images", str(predictions["image"].nunique())), ("predicted", str(total))]
    facts.append(("failed", str(sum(n for s, n in counts.items() if S.outcome(s) == "failed"))))
    facts.append(("top-k", str(int(ok["rank"].max())) if not ok.empty else "–"))
    facts.append(("target hits", f"{hits} of {total}"))
    # Which resize protocol made the pixels (predictions written before the column: unknown).
    used = predictions["preprocessing"].dropna() if "preprocessing" in predictions else []
    facts.append(("preprocessing", ", ".join(sorted(set(map(str, used)))) or "not recorded"))
    names = " or ".join(per_target) if per_target else "a target"
    blocks: list = [Facts(facts), Text(f"{hits} of {S.plural(total, 'image')} are {names}.")]
    if identity != model_name(identity):
        blocks.append(Text(f"Model: {identity}"))
    if per_target:
        rows = [[label, n] for label, n in per_target.items()]
        blocks.append(Table(["target", "images"], rows, "Images per target"))
    if set(counts) != {"ok"}:
        blocks.append(_status_table(counts, "images", "Images by status"))
    chosen = S.spread_sample(ok["image"].astype(str).unique().tolist(), sample)
    picked = ok[ok["image"].isin(chosen)].sort_values(["image", "rank"])
    if not picked.empty:
        blocks.append(_topk_table(picked, thumbs, len(chosen), total))
    best = S.top1(predictions).sort_values(["probability", "image"], ascending=[False, True])
    if len(best) <= 2 * CONFIDENT:  # too few to split into most and least confident
        blocks.append(_confident(best, thumbs, "All rank-1 predictions, most confident first"))
    else:
        blocks.append(_confident(best.head(CONFIDENT), thumbs, "Most confident predictions"))
        least = best.sort_values(["probability", "image"]).head(CONFIDENT)
        blocks.append(_confident(least, thumbs, "Least confident predictions"))
    return blocks, picked


def model_name(identity: str) -> str:
    """`small_cnn` of `small_cnn@/data/models/<run>/best.keras:sha256=…` (the model column)."""
    return identity.split("@", 1)[0] or identity


def _topk_table(picked: pd.DataFrame, thumbs: Thumbs, shown: int, total: int) -> Table:
    rows = []
    for image, group in picked.groupby("image", sort=True):
        ranked = "; ".join(
            f"{int(r.rank)}. {r.label} {fmt(float(r.probability))}" for r in group.itertuples()
        )
        target = bool(group["is_target"].fillna(False).astype(bool).any())
        rows.append([thumbs(str(image), short(image)), short(image), ranked, fmt(target)])
    caption = f"Top-k labels (rank. label probability) for {shown} of {S.plural(total, 'image')}"
    return Table(["", "image", "top-k", "target"], rows, caption)


def _confident(rows: pd.DataFrame, thumbs: Thumbs, title: str) -> Table:
    body = [
        [thumbs(r.image, short(r.image)), short(r.image), r.label, float(r.probability)]
        for r in rows.itertuples()
    ]
    return Table(["", "image", "label", "probability"], body, title)
