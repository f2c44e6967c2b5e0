"""Pure summaries of warehouse tables for the report: counts, best epoch, confusion, hits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.runtime import evenly_spaced

SPLITS = ("train", "val", "test")
# What a status means to a reader, for every status of storage/schemas.py's vocabularies:
# `skipped` is an item left out on purpose by a rule, as expected (a duplicate, a thumbnail
# under min_size, a page robots.txt keeps out); `failed` is an item where something went wrong
# (an HTTP error, a timeout, bytes that do not decode). A status missing from both (a newer
# one) counts as failed until it is placed here; tests/tasks/report/test_stats.py checks that
# every status in the vocabularies is placed.
SKIPPED = frozenset(
    {
        "duplicate",
        "too_small",
        "too_large",
        "unsupported_scheme",
        "blocked",
        "robots_disallowed",
        "skipped",
        "conflict",
        "capped",
        "unsupported",
        "excluded_by_curation",
    }
)
# bad_row: a URL list row without a usable URL or label (the list needs fixing).
FAILED = frozenset(
    {"http_error", "timeout", "not_image", "corrupt", "page_error", "missing", "bad_row"}
)
OUTCOMES = ("ok", "skipped", "failed")


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    """`{status: rows}`, most frequent first (ties by name), for any table with a status."""
    if frame.empty:
        return {}
    counts = frame["status"].astype(str).value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {status: int(n) for status, n in ordered}


def outcome(status: str) -> str:
    """`ok`, `skipped` (left out by a rule, expected) or `failed` (went wrong)."""
    if status == "ok":
        return "ok"
    return "skipped" if status in SKIPPED else "failed"


def outcome_counts(frame: pd.DataFrame) -> dict[str, int]:
    """`{ok, skipped, failed: rows}` of a table with a status column."""
    found = {name: 0 for name in OUTCOMES}
    for status, n in status_counts(frame).items():
        found[outcome(status)] += n
    return found


def split_counts(dataset: pd.DataFrame) -> dict[str, dict[str, int]]:
    """`{label: {split: images}}` over the dataset's ok rows, labels by label_index then name."""
    ok = dataset[dataset["status"] == "ok"]
    if ok.empty:
        return {}
    order = (
        ok.assign(_i=ok["label_index"].astype("Float64").fillna(np.inf))
        .groupby("label")["_i"]
        .min()
        .reset_index()
        .sort_values(["_i", "label"])["label"]
        .tolist()
    )
    table = {label: {} for label in order}
    pairs = ok.assign(split=ok["split"].fillna("none")).groupby(["label", "split"]).size()
    for (label, split), n in pairs.items():
        table[str(label)][str(split)] = int(n)
    return table


def split_order(counts: dict[str, dict[str, int]]) -> list[str]:
    present = {s for per_label in counts.values() for s in per_label}
    return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def latest_epochs(history: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch; a resumed run may have re-recorded an epoch, keep the last record."""
    if history.empty:
        return history
    if "finished_at" in history and history["finished_at"].notna().any():
        history = history.sort_values(["epoch", "finished_at"], na_position="first")
    else:
        history = history.sort_values("epoch", kind="stable")
    return history.drop_duplicates("epoch", keep="last").reset_index(drop=True)


def best_epoch(epochs: pd.DataFrame) -> pd.Series | None:
    """The row flagged is_best (the last one if several), else the lowest val_loss, else None."""
    if epochs.empty:
        return None
    flagged = epochs[epochs["is_best"].fillna(False).astype(bool)]
    if not flagged.empty:
        return flagged.iloc[-1]
    if epochs["val_loss"].notna().any():
        return epochs.loc[epochs["val_loss"].astype(float).idxmin()]
    return None


def none_if_na(value: object) -> object:
    return None if value is None or pd.isna(value) else value


def top1(predictions: pd.DataFrame) -> pd.DataFrame:
    """The rank-1 row of every successfully predicted image."""
    ok = predictions[(predictions["status"] == "ok") & (predictions["rank"] == 1)]
    return ok.drop_duplicates(["model", "image"], keep="last").reset_index(drop=True)


def validation_pairs(
    predictions: pd.DataFrame,
    dataset: pd.DataFrame,
    class_names: list[str] | None = None,
    split: str = "val",
) -> tuple[str | None, pd.DataFrame]:
    """(model, rows of image/true/predicted) for the `split` images with a rank-1 prediction.

    A pipeline run may hold predictions of several models (the trained one, ResNet50 on
    ImageNet); the confusion matrix is the trained model's: the model whose predicted labels
    are most often the dataset's classes, then the one with the most validation images.
    """
    val = dataset[(dataset["status"] == "ok") & (dataset["split"] == split)]
    val = val[["path", "label"]].dropna().drop_duplicates("path")
    val = val.rename(columns={"path": "image", "label": "true"})
    classes = set(class_names or val["true"])
    best_model, best_rows, best_score = None, val.iloc[0:0].assign(predicted=[]), (-1, -1)
    for model, group in top1(predictions).groupby("model", sort=True):
        rows = (
            group[["image", "label"]].rename(columns={"label": "predicted"}).merge(val, on="image")
        )
        rows = rows[["image", "true", "predicted"]].dropna().reset_index(drop=True)
        score = (int(rows["predicted"].isin(classes).sum()), len(rows))
        if len(rows) and score > best_score:
            best_model, best_rows, best_score = str(model), rows, score
    return best_model, best_rows


@dataclass(frozen=True)
class Confusion:
    """Rows: true labels; columns: predicted labels, the true ones first in the same order
    (so cell [i, i] counts the hits of class i), then labels only ever predicted."""

    true_labels: list[str]
    pred_labels: list[str]
    matrix: np.ndarray

    @property
    def accuracy(self) -> float:
        hits = int(np.trace(self.matrix[:, : len(self.true_labels)]))
        return hits / max(int(self.matrix.sum()), 1)

    def per_class(self) -> list[dict[str, object]]:
        """Precision and recall per true class (None where a ratio has no denominator)."""
        rows = []
        for i, label in enumerate(self.true_labels):
            hits, support, predicted = (
                int(self.matrix[i, i]),
                int(self.matrix[i].sum()),
                int(self.matrix[:, i].sum()),
            )
            rows.append(
                {
                    "label": label,
                    "images": support,
                    "precision": hits / predicted if predicted else None,
                    "recall": hits / support if support else None,
                }
            )
        return rows


def confusion(pairs: pd.DataFrame, class_names: list[str] | None = None) -> Confusion:
    """Confusion matrix of (true, predicted); the model's classes first, in the model's order."""
    classes = [c for c in (class_names or []) if c in set(pairs["true"]) | set(pairs["predicted"])]
    true = classes + sorted(set(pairs["true"]) - set(classes))
    pred = true + sorted(set(pairs["predicted"]) - set(true))
    matrix = np.zeros((len(true), len(pred)), dtype=np.int64)
    for t, p in zip(pairs["true"], pairs["predicted"], strict=True):
        matrix[true.index(t), pred.index(p)] += 1
    return Confusion(true, pred, matrix)


def target_hits(predictions: pd.DataFrame) -> tuple[int, int, dict[str, int]]:
    """(images that matched a target, images predicted ok, {target label: images})."""
    ok = predictions[predictions["status"] == "ok"]
    total = int(ok["image"].nunique())
    hits = ok[ok["is_target"].fillna(False).astype(bool)]
    per_label = hits.drop_duplicates(["image", "label"]).groupby("label")["image"].nunique()
    ordered = sorted(per_label.items(), key=lambda kv: (-kv[1], kv[0]))
    return int(hits["image"].nunique()), total, {str(k): int(v) for k, v in ordered}


def spread_sample(items: list[str], n: int) -> list[str]:
    """Up to n items spread evenly over the sorted list: deterministic, not just the first."""
    return evenly_spaced(sorted(items), n)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
