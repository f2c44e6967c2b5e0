"""predict_batch's tasks: run a model over image batches and turn probabilities into
`predictions` rows (one per image per rank), one Parquet part per shard."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from storage.parquet import write_table
from tasks.predict.engines.cache import get_predictor
from tasks.predict.images import OK, STATUS_NAMES, image_batches
from tasks.predict.labels import binary_ranking, ranking, target_scores
from tasks.predict.spec import ModelSpec
from tasks.runtime import Progress, logger

TOP_ROWS = 20  # rows of the Prefect table artifact


@dataclass(frozen=True)
class Decoding:
    """How probabilities become rows: ranks kept, targets, and the binary threshold."""

    top_k: int = 3
    target_idx: tuple[int, ...] = ()
    within: int = 3  # a target counts when it ranks this high
    threshold: float = 0.5


def prediction_rows(
    paths: list[str],
    probs: np.ndarray,
    status: np.ndarray,
    errors: list[str],
    *,
    spec: ModelSpec,
    run_id: str,
    decoding: Decoding,
) -> list[dict]:
    """Top-k rows per readable image and one status row per unreadable one.

    `is_target` marks the rows whose class is a target within the target rank (an image is a
    hit when any of its rows is); `target_probability` is the image's, on each of its rows.
    """
    if spec.binary:
        probs, order = binary_ranking(probs, decoding.threshold)
    else:
        order = ranking(probs)
    within = min(decoding.within, decoding.top_k)  # a target is marked on a row that is kept
    is_target, target_p = target_scores(probs, order, list(decoding.target_idx), within)
    rows, prep = [], spec.preprocessing.describe()
    for i, image in enumerate(paths):
        base = {"run_id": run_id, "model": spec.identity, "image": image, "preprocessing": prep}
        base["model_run"] = spec.model_run
        if status[i] != OK:
            rows.append(
                base
                | dict.fromkeys(("rank", "label", "label_index", "probability"))
                | {"is_target": None, "target_probability": None}
                | {"status": STATUS_NAMES[status[i]], "error": errors[i]}
            )
            continue
        for rank, c in enumerate(order[i, : decoding.top_k], start=1):
            rows.append(
                base
                | {"rank": rank, "label": spec.labels.names[c], "label_index": int(c)}
                | {"probability": float(probs[i, c])}
                | {"is_target": rank <= within and bool(is_target[i, rank - 1])}
                | {"target_probability": float(target_p[i]), "status": "ok", "error": None}
            )
    return rows


def predict_images(
    paths: list[str], spec: ModelSpec, *, batch_size: int, run_id: str, decoding: Decoding
) -> Iterator[list[dict]]:
    """Rows batch by batch: the model (loaded once per process) runs on whole batches."""
    predict = get_predictor(spec)
    start = 0
    for pixels, status, error in image_batches(
        paths, spec.image_size, batch_size, spec.preprocessing
    ):
        n = int(status.shape[0])
        probs = predict(pixels)
        errors = [e.decode() for e in error.numpy()]
        yield prediction_rows(
            paths[start : start + n],
            probs,
            status.numpy(),
            errors,
            spec=spec,
            run_id=run_id,
            decoding=decoding,
        )
        start += n


# ---- the task: one shard ------------------------------------------------------------------------


FAILED_ROWS = 20  # images not ok a summary names (the table has them all)


class ShardSummary(BaseModel):
    """What a shard sends back: its file and counts, never the rows."""

    part: str
    path: str
    images: int
    ok: int
    corrupt: int
    missing: int
    target_hits: int
    counts: dict[str, int]  # top-1 label -> images
    top: list[dict]  # rank-1 rows with the highest target probability
    seconds: float
    failed: list[dict] = []  # the first FAILED_ROWS images not ok: image, status, error


def summarize(part: str, path: str, rows: list[dict], seconds: float) -> ShardSummary:
    firsts = [r for r in rows if r["status"] != "ok" or r["rank"] == 1]
    statuses = Counter(r["status"] for r in firsts)
    hits = {r["image"] for r in rows if r["is_target"]}
    ok_rows = [r | {"is_target": r["image"] in hits} for r in firsts if r["status"] == "ok"]
    top = sorted(
        ok_rows, key=lambda r: (r["is_target"], r["target_probability"], r["probability"])
    )[::-1][:TOP_ROWS]
    return ShardSummary(
        part=part,
        path=path,
        images=len(firsts),
        ok=statuses["ok"],
        corrupt=statuses["corrupt"],
        missing=statuses["missing"],
        target_hits=len(hits),
        counts=dict(Counter(r["label"] for r in ok_rows).most_common()),
        top=[{k: r[k] for k in ("image", "label", "probability", "is_target")} for r in top],
        seconds=round(seconds, 3),
        failed=[
            {k: r.get(k) for k in ("image", "status", "error")}
            for r in firsts
            if r["status"] != "ok"
        ][:FAILED_ROWS],
    )


# NO_CACHE: the task's work is the file it writes; a cache hit would skip writing it.
@task(name="predict-shard", task_run_name="predict-shard-{part}", cache_policy=NO_CACHE)
def predict_shard(
    paths: list[str],
    spec: ModelSpec,
    *,
    run_id: str,
    part: str,
    run_date: date,
    data_dir: str | None,
    batch_size: int,
    decoding: Decoding,
) -> ShardSummary:
    """Predict one shard of images and write its rows as predictions part `part`."""
    started = time.perf_counter()
    # The bar of this shard; the run's progress artifact is the flow's.
    progress = Progress(len(paths), f"predict shard {part}", artifact=False)
    rows: list[dict] = []
    for batch in predict_images(
        paths, spec, batch_size=batch_size, run_id=run_id, decoding=decoding
    ):
        rows += batch
        progress.advance(sum(r["status"] != "ok" or r["rank"] == 1 for r in batch))
    path = write_table(
        "predictions", rows, run_id=run_id, data_dir=data_dir, run_date=run_date, part=part
    )
    summary = summarize(part, str(path), rows, time.perf_counter() - started)
    logger().info(
        "shard %s: %d images (%d ok, %d corrupt, %d missing), %d target hits, %.1f img/s",
        part,
        summary.images,
        summary.ok,
        summary.corrupt,
        summary.missing,
        summary.target_hits,
        summary.images / max(summary.seconds, 1e-9),
    )
    return summary
