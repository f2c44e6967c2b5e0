"""Every warehouse table's pyarrow schema, declared once; nothing else re-declares columns."""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


def _schema(*fields: pa.Field) -> pa.Schema:
    return pa.schema(list(fields))


def req(name: str, type_: pa.DataType) -> pa.Field:
    """A column that must never be null."""
    return pa.field(name, type_, nullable=False)


def opt(name: str, type_: pa.DataType) -> pa.Field:
    """A column that may be null (e.g. `http_status` of a URL that was never fetched)."""
    return pa.field(name, type_, nullable=True)


# Closed vocabularies of the `status` columns. A bad item becomes a row with one of these.
SCRAPE_STATUSES = (
    "ok",
    "duplicate",
    "http_error",
    "timeout",
    "not_image",
    "too_small",
    "too_large",
    "corrupt",
    "unsupported_scheme",
    "blocked",
    "robots_disallowed",
    "page_error",
    "skipped",
    "bad_row",  # a URL list's row with no URL or an unusable label
)
DATASET_STATUSES = (
    "ok",
    "corrupt",
    "duplicate",
    "conflict",
    "unsupported",
    "capped",
    "excluded_by_curation",
)
PREDICTION_STATUSES = ("ok", "corrupt", "missing")
# What the registry decided about a model (tasks/registry/decide.py says when each applies).
MODEL_DECISIONS = ("first", "promoted", "kept", "incompatible", "forced", "rolled_back")
# curation.verdict: `ok` passed the check, `off_topic` / `suspect_label` are flagged (prepare
# leaves them out with `--exclude-curation RUN`), `error` could not be checked (unreadable).
CURATION_VERDICTS = ("ok", "off_topic", "suspect_label", "error")
CURATION_CHECKS = ("on_topic", "label_issues")

SCRAPE_MANIFEST = _schema(
    req("run_id", pa.string()),
    req("page_url", pa.string()),
    req("url", pa.string()),
    req("label", pa.string()),
    req("status", pa.string()),
    opt("http_status", pa.int32()),
    opt("error", pa.string()),
    opt("sha256", pa.string()),
    opt("path", pa.string()),
    opt("width", pa.int32()),
    opt("height", pa.int32()),
    opt("format", pa.string()),
    opt("bytes", pa.int64()),
    opt("content_type", pa.string()),
    opt("found_in", pa.string()),
    opt("final_url", pa.string()),  # after redirects
    opt("attempts", pa.int32()),  # HTTP requests made, redirects and retries included
    opt("fetched_at", TS),
    opt("elapsed_s", pa.float64()),
)

DATASET_MANIFEST = _schema(
    req("run_id", pa.string()),
    req("dataset", pa.string()),
    opt("path", pa.string()),
    req("label", pa.string()),
    opt("label_index", pa.int32()),
    opt("split", pa.string()),
    opt("sha256", pa.string()),
    opt("source_url", pa.string()),
    req("source_path", pa.string()),
    req("status", pa.string()),
    opt("error", pa.string()),
    opt("width", pa.int32()),
    opt("height", pa.int32()),
    opt("phash", pa.string()),  # 64-bit perceptual hash, 16 hex digits
    opt("near_duplicate_group", pa.string()),  # smallest sha256 of its near-duplicate group
    opt("brightness", pa.float32()),  # mean gray level 0-255 (of a 32x32 reduction)
    opt("contrast", pa.float32()),  # its standard deviation: ~0 for a blank image
)

EPOCH_HISTORY = _schema(
    req("run_id", pa.string()),
    req("model", pa.string()),
    req("epoch", pa.int32()),
    opt("loss", pa.float64()),
    opt("accuracy", pa.float64()),
    opt("val_loss", pa.float64()),
    opt("val_accuracy", pa.float64()),
    req("is_best", pa.bool_()),
    opt("checkpoint_path", pa.string()),
    opt("seconds", pa.float64()),
    opt("learning_rate", pa.float64()),
    opt("finished_at", TS),
)

BATCH_HISTORY = _schema(
    req("run_id", pa.string()),
    req("model", pa.string()),
    req("epoch", pa.int32()),
    req("batch", pa.int32()),
    opt("loss", pa.float64()),
    opt("accuracy", pa.float64()),
)

PREDICTIONS = _schema(
    req("run_id", pa.string()),
    req("model", pa.string()),
    req("image", pa.string()),
    opt("rank", pa.int16()),
    opt("label", pa.string()),
    opt("label_index", pa.int32()),
    opt("probability", pa.float32()),
    opt("is_target", pa.bool_()),
    opt("target_probability", pa.float32()),
    req("status", pa.string()),
    opt("error", pa.string()),
    opt("preprocessing", pa.string()),  # e.g. "crop(0.875)/bilinear; <value scaling>"
    opt("model_run", pa.string()),  # the train run of a trained model (None: a backbone)
)

# One row per registry decision about a trained model (its first evaluation, a forced
# promotion, a rollback to it...): the latest row of a run is where that model stands.
_ACCURACIES = pa.map_(pa.string(), pa.float64())  # class name -> accuracy on the eval split
MODELS = _schema(
    req("run_id", pa.string()),  # the model's train run
    req("model", pa.string()),  # architecture (small_cnn, ...)
    req("dataset", pa.string()),
    req("model_path", pa.string()),
    opt("sha256", pa.string()),
    req("class_names", pa.list_(pa.string())),
    opt("image_size", pa.list_(pa.int32())),  # (height, width)
    opt("best_epoch", pa.int32()),
    opt("best_val_accuracy", pa.float64()),
    opt("best_val_loss", pa.float64()),
    opt("eval_split", pa.string()),  # test, else val
    opt("eval_images", pa.int32()),
    opt("eval_fingerprint", pa.string()),  # sha256 of the split's files and contents
    opt("eval_accuracy", pa.float64()),
    opt("eval_loss", pa.float64()),
    opt("eval_class_accuracy", _ACCURACIES),
    opt("champion_run", pa.string()),  # the champion it was compared with (or replaced)
    opt("champion_accuracy", pa.float64()),  # that champion on the same images
    opt("champion_loss", pa.float64()),
    opt("champion_class_accuracy", _ACCURACIES),
    req("decision", pa.string()),
    req("reason", pa.string()),
    req("decided_at", TS),
)

CURATION = _schema(
    req("run_id", pa.string()),
    req("path", pa.string()),
    opt("sha256", pa.string()),
    req("label", pa.string()),
    req("check", pa.string()),
    req("verdict", pa.string()),
    opt("evidence", pa.string()),  # top-k ImageNet classes, or what the label model believes
    opt("suggested_label", pa.string()),
    opt("probability", pa.float32()),  # of the top-1 class / of the suggested label
    opt("model", pa.string()),
    opt("checked_at", TS),
)

TABLES: dict[str, pa.Schema] = {
    "scrape_manifest": SCRAPE_MANIFEST,
    "dataset_manifest": DATASET_MANIFEST,
    "epoch_history": EPOCH_HISTORY,
    "batch_history": BATCH_HISTORY,
    "predictions": PREDICTIONS,
    "models": MODELS,
    "curation": CURATION,
}

STATUSES: dict[str, tuple[str, ...]] = {
    "scrape_manifest": SCRAPE_STATUSES,
    "dataset_manifest": DATASET_STATUSES,
    "predictions": PREDICTION_STATUSES,
}

# Other closed columns, checked like `status`: {table: {column: allowed values}}.
VOCABULARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "models": {"decision": MODEL_DECISIONS},
    "curation": {"verdict": CURATION_VERDICTS, "check": CURATION_CHECKS},
}
