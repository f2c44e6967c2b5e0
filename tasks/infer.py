"""Batch inference: find the images, decode them in a tf.data pipeline, run the model on whole
batches, and turn probabilities into `predictions` rows (one per image per rank)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from storage.errors import ConfigError
from storage.layout import resolve_data_dir
from storage.parquet import read_table, write_table
from tasks.imagenet import binary_ranking, ranking, target_scores
from tasks.predictors import ModelSpec, get_predictor
from tasks.runtime import Progress, logger

# What a folder search picks up; a file named explicitly is read whatever its name.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff"}
    | {".ppm", ".pgm", ".pbm", ".pnm", ".ico"}
)
OK, CORRUPT, MISSING = 0, 1, 2
STATUS_NAMES = ("ok", "corrupt", "missing")
TOP_ROWS = 20  # rows of the Prefect table artifact


# ---- inputs ------------------------------------------------------------------------------------


def _posix(path: Path) -> str:
    return path.expanduser().resolve().as_posix()


def images_in(folder: Path) -> list[str]:
    """Image files under a folder, recursively, in a stable order (hidden files skipped)."""
    found = (
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    return sorted(_posix(p) for p in found)


def from_paths(inputs: Iterable[str]) -> list[str]:
    """Files as given and folders searched; a path that does not exist is a ConfigError."""
    images: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            images += images_in(path)
        elif path.exists():
            images.append(_posix(path))
        else:
            raise ConfigError(f"input {item!r} does not exist (give image files or folders)")
    return images


def from_scrape_run(run_id: str, data_dir: str | None) -> list[str]:
    """The files of a scrape run's `ok` rows (relative paths are under the data root)."""
    rows = read_table("scrape_manifest", data_dir=data_dir, run_id=run_id)
    if rows.empty:
        raise ConfigError(f"scrape run {run_id!r} has no scrape_manifest rows under {data_dir}")
    ok = rows[(rows["status"] == "ok") & rows["path"].notna()]
    root = resolve_data_dir(data_dir)
    return [_posix(root / p) for p in ok["path"]]  # an absolute p replaces the root


def from_dataset(dataset_dir: str, split: str) -> list[str]:
    """The images of dataset_dir/<split>/<class>/."""
    folder = Path(dataset_dir).expanduser() / split
    if not folder.is_dir():
        raise ConfigError(f"{folder} does not exist: is {dataset_dir} a prepared dataset?")
    return images_in(folder)


def collect_images(
    inputs: list[str],
    *,
    scrape_run: str | None = None,
    dataset_dir: str | None = None,
    split: str = "val",
    data_dir: str | None = None,
) -> list[str]:
    """Absolute POSIX paths of every image to predict, each once, in input order."""
    if scrape_run:
        images, where = from_scrape_run(scrape_run, data_dir), f"scrape run {scrape_run}"
    elif dataset_dir:
        images, where = from_dataset(dataset_dir, split), f"{dataset_dir}/{split}"
    elif inputs:
        images, where = from_paths(inputs), ", ".join(inputs)
    else:
        raise ConfigError("nothing to predict: give inputs, scrape_run or dataset_dir")
    images = list(dict.fromkeys(images))
    if not images:
        raise ConfigError(f"no images found in {where}")
    return images


# ---- decoding: the classic recipe, in a parallel pipeline ---------------------------------------


def load_pixels(path: str, size: tuple[int, int], interpolation: str = "nearest") -> np.ndarray:
    """keras.utils.load_img(target_size=size) -> img_to_array: float32 (h, w, 3) RGB 0-255."""
    image = keras.utils.load_img(path, target_size=size, interpolation=interpolation)
    return keras.utils.img_to_array(image, dtype="float32")


def _reader(size: tuple[int, int], interpolation: str):
    blank = np.zeros((*size, 3), np.float32)

    def read(path: bytes) -> tuple[np.ndarray, np.int8, bytes]:
        try:
            return load_pixels(path.decode(), size, interpolation), np.int8(OK), b""
        except FileNotFoundError as e:
            return blank, np.int8(MISSING), str(e).encode()
        # Pillow raises many types for bad files (OSError, ValueError, SyntaxError,
        # DecompressionBombError...): any of them makes this one image a `corrupt` row.
        except Exception as e:
            return blank, np.int8(CORRUPT), f"{type(e).__name__}: {e}".encode()

    return read


def image_batches(
    paths: list[str], size: tuple[int, int], batch_size: int, interpolation: str = "nearest"
) -> tf.data.Dataset:
    """(pixels, status, error) batches; decoding runs in parallel and ahead of the model.

    Pillow does the decoding so pixels equal load_img's exactly (formats, modes, resize);
    it releases the GIL while decoding and resizing, so the parallel map really is parallel.
    """
    read = _reader(size, interpolation)

    def load(path):
        pixels, status, error = tf.numpy_function(read, [path], [tf.float32, tf.int8, tf.string])
        pixels.set_shape((*size, 3))
        return pixels, status, error

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ---- probabilities -> rows ----------------------------------------------------------------------


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
    rows = []
    for i, image in enumerate(paths):
        base = {"run_id": run_id, "model": spec.identity, "image": image}
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
        paths, spec.image_size, batch_size, spec.interpolation
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
    progress = Progress(len(paths), f"predict shard {part}")
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
