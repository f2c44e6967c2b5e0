"""Which images a prediction run reads, and their pixels decoded in a tf.data pipeline
(raw 0-255 RGB at the model's size, resized by the model's preprocessing)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from storage.errors import ConfigError
from storage.files import IMAGE_EXTENSIONS
from storage.images import open_image
from storage.layout import resolve_data_dir
from storage.parquet import read_table
from tasks.predict.preprocess import Preprocessing, resize, to_array

OK, CORRUPT, MISSING = 0, 1, 2
STATUS_NAMES = ("ok", "corrupt", "missing")


# ---- inputs ------------------------------------------------------------------------------------


def _posix(path: Path) -> str:
    return path.expanduser().resolve().as_posix()


def images_in(folder: Path) -> list[str]:
    """Image files under a folder, recursively, in a stable order (hidden files skipped)."""
    found = (
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
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


# ---- decoding: the model's preprocessing, in a parallel pipeline -------------------------------

CLASSIC = Preprocessing("stretch", "nearest")  # keras.utils.load_img(target_size=...)'s default


def load_pixels(path: str, size: tuple[int, int], prep: Preprocessing = CLASSIC) -> np.ndarray:
    """float32 (h, w, 3) RGB 0-255, opened through the image gate (storage/images.py: formats,
    pixel budget, JPEG scan cap). stretch is what keras.utils.load_img(target_size=size) ->
    img_to_array gives, exactly (its steps: RGB, then one resize if the size differs; the
    test compares); crop and pad decode the same way, then resize by the protocol."""
    with open_image(path) as image:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if prep.resize_mode != "stretch":
            return to_array(resize(rgb, size, prep))
        if rgb.size != (size[1], size[0]):
            rgb = rgb.resize((size[1], size[0]), Image.Resampling[prep.interpolation.upper()])
        return to_array(rgb)


def _reader(size: tuple[int, int], prep: Preprocessing):
    blank = np.zeros((*size, 3), np.float32)

    def read(path: bytes) -> tuple[np.ndarray, np.int8, bytes]:
        try:
            return load_pixels(path.decode(), size, prep), np.int8(OK), b""
        except FileNotFoundError as e:
            return blank, np.int8(MISSING), str(e).encode()
        # The gate's refusals (over a budget, not an accepted format) and Pillow's many types
        # for bad files (OSError, ValueError, SyntaxError...): a `corrupt` row with the reason.
        except Exception as e:
            return blank, np.int8(CORRUPT), f"{type(e).__name__}: {e}".encode()

    return read


def image_batches(
    paths: list[str], size: tuple[int, int], batch_size: int, prep: Preprocessing = CLASSIC
) -> tf.data.Dataset:
    """(pixels, status, error) batches; decoding runs in parallel and ahead of the model.

    Pillow does the decoding so stretch pixels equal load_img's exactly (formats, modes,
    resize); it releases the GIL while decoding and resizing, so the parallel map really is
    parallel.
    """
    read = _reader(size, prep)

    def load(path):
        pixels, status, error = tf.numpy_function(read, [path], [tf.float32, tf.int8, tf.string])
        pixels.set_shape((*size, 3))
        return pixels, status, error

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ---- probabilities -> rows ----------------------------------------------------------------------
