"""The pixels of a prediction run's images, decoded in a tf.data pipeline (raw 0-255 RGB at
the model's size, resized by the model's preprocessing); which images: tasks.predict.inputs."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from PIL import Image

from storage.images import open_image
from tasks.predict.preprocess import Preprocessing, resize, to_array

OK, CORRUPT, MISSING = 0, 1, 2
STATUS_NAMES = ("ok", "corrupt", "missing")


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


# With tf.data's autotuning on, the end of the iteration (after the last batch) sometimes waited
# 1.1 s: a 1,000-image shard took 1.46 s or 2.57 s on 2 cores (bench/predict_shards.py). With it
# off, no shard waited and the batches came at the same rate; two are decoded ahead of the model.
PREFETCH_BATCHES = 2
_FIXED = tf.data.Options()
_FIXED.autotune.enabled = False


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
    return ds.batch(batch_size).prefetch(PREFETCH_BATCHES).with_options(_FIXED)


# ---- probabilities -> rows ----------------------------------------------------------------------
