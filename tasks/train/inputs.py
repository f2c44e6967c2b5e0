"""The tf.data input pipeline of training: parallel decode, a uint8 cache, seeded per-epoch
shuffle, batches, augmentation on train only, prefetch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tasks.runtime import logger
from tasks.train.augment import build_augmentation
from tasks.train.spec import TrainSpec

# Decoded images are cached in memory (as uint8) when they take less than this.
CACHE_LIMIT_BYTES = 4 << 30


def make_datasets(spec: TrainSpec, cache: bool | None = None) -> tuple[Any, Any]:
    """(train, val) tf.data pipelines: parallel decode, uint8 cache, seeded per-epoch shuffle,
    batch, augmentation on train only, prefetch. Pixels stay raw 0..255 floats: the model
    rescales them itself."""
    root = Path(spec.dataset_dir)
    common = {
        "label_mode": spec.label_mode,
        "class_names": spec.class_names,
        "image_size": tuple(spec.image_size),
        "batch_size": None,
        "seed": spec.seed,
        "verbose": False,  # its "Found N files" print would bypass the log: logged below
    }
    # TensorFlow decodes here, not the image gate (storage/images.py): a dataset is what
    # prepare wrote, every image re-encoded by pixelpipe at image_size (baseline JPEG or PNG)
    # from a source the gate let through, so no budget can be exceeded. A folder made by hand
    # is the operator's own files; spec.py opens its first image through the gate.
    load = keras.utils.image_dataset_from_directory
    if (root / "val").is_dir():
        train = load(root / "train", shuffle=True, **common)
        val = load(root / "val", shuffle=False, **common)
    else:
        train, val = load(
            root / "train",
            shuffle=True,
            validation_split=spec.validation_split,
            subset="both",
            **common,
        )
    n_train, n_val = len(train.file_paths), len(val.file_paths)
    logger().info("%d training and %d validation images of %d classes", n_train, n_val,
                  len(spec.class_names))  # fmt: skip
    pixels = (n_train + n_val) * spec.image_size[0] * spec.image_size[1] * 3
    cache = pixels <= CACHE_LIMIT_BYTES if cache is None else cache
    augment = build_augmentation(spec.augmentation, spec.seed)
    return (
        _pipeline(train, spec, cache, augment, shuffle=n_train),
        _pipeline(val, spec, cache, None, shuffle=0),
    )


def _pipeline(ds, spec: TrainSpec, cache: bool, augment, shuffle: int):
    autotune = tf.data.AUTOTUNE
    # uint8 in the cache: a quarter of the memory of the float32 the loader yields.
    ds = ds.map(
        lambda x, y: (tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8), y), autotune
    )
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(shuffle, 10_000), seed=spec.seed, reshuffle_each_iteration=True)
    ds = ds.batch(spec.batch_size)
    if augment is None:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), autotune)
    else:
        ds = ds.map(lambda x, y: (augment(tf.cast(x, tf.float32), training=True), y), autotune)
    return ds.prefetch(autotune)
