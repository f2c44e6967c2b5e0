"""Pooled features of a frozen ImageNet backbone, computed once per image and cached on disk by
the image's content hash (and the backbone's identity), so re-runs and other runs reuse them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np

from storage import files
from tasks.predict.preprocess import Preprocessing
from tasks.train.spec import resolve_weights
from tasks.weights import file_digest

# `pixels` is the "tiny images" baseline (Torralba et al. 2008): an 8x8 colour thumbnail as
# features. No weights, instant, and enough where classes differ in colour and layout; an
# ImageNet backbone is far better on photos (BENCHMARKS.md, "Curation").
Backbone = Literal["mobilenet", "resnet50", "pixels"]
THUMB = 8
# The whole picture at the backbone's size: a label check must see all of it, not a centre crop.
STRETCH = Preprocessing("stretch", "bilinear")
_TRAIN_NAME = {"mobilenet": "mobilenet_transfer", "resnet50": "resnet50_transfer"}


@dataclass(frozen=True)
class FeatureSpec:
    """A feature extractor anyone can rebuild: backbone, its weights and input size."""

    backbone: Backbone
    weights: str | None  # "imagenet" (the Keras cache), a local file, or None (random, seeded)
    alpha: float = 0.25  # MobileNet width
    size: int = 224

    @property
    def identity(self) -> str:
        if self.weights in (None, "imagenet"):
            weights = self.weights or "random(seed=0)"
        else:
            weights = f"sha256={file_digest(self.weights)[:12]}"
        if self.backbone == "pixels":
            return f"pixels-{THUMB}x{THUMB}"
        width = f"-{self.alpha}" if self.backbone == "mobilenet" else ""
        return f"{self.backbone}{width}@{weights}:{self.size}px"

    @property
    def cache_key(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]


def feature_spec(backbone: Backbone, weights: str | None, alpha: float, size: int) -> FeatureSpec:
    """Check the weights before any work (WeightsNotFoundError names the missing file)."""
    if backbone == "pixels":
        return FeatureSpec("pixels", None, alpha, THUMB * 4)
    resolved = resolve_weights(_TRAIN_NAME[backbone], weights, alpha, size, "--feature-weights")
    return FeatureSpec(backbone, resolved, alpha, size)


@cache
def extractor(spec: FeatureSpec) -> Callable[[np.ndarray], np.ndarray]:
    """(n, size, size, 3) raw pixels -> (n, d) float32 pooled features; built once per process."""
    if spec.backbone == "pixels":
        return _thumbnail
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)  # weights=None: the same random features in every run
    shape = (spec.size, spec.size, 3)
    if spec.backbone == "mobilenet":
        base = keras.applications.MobileNet(
            include_top=False, weights=spec.weights, input_shape=shape, alpha=spec.alpha,
            pooling="avg",
        )  # fmt: skip
        preprocess = keras.applications.mobilenet.preprocess_input
    else:
        base = keras.applications.ResNet50(
            include_top=False, weights=spec.weights, input_shape=shape, pooling="avg"
        )
        preprocess = keras.applications.resnet50.preprocess_input

    @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32)])
    def run(x):
        return tf.cast(base(preprocess(x), training=False), tf.float32)

    return lambda x: run(x).numpy()


def _thumbnail(pixels) -> np.ndarray:
    """(n, 32, 32, 3) -> (n, 192): 4x4 block means, 0-1."""
    x = np.asarray(pixels, dtype=np.float32)
    n, h, w, _ = x.shape
    blocks = x.reshape(n, THUMB, h // THUMB, THUMB, w // THUMB, 3).mean(axis=(2, 4))
    return blocks.reshape(n, -1) / 255.0


def cached_features(
    paths: list[str], shas: list[str], spec: FeatureSpec, cache_dir: Path, batch_size: int = 64
) -> tuple[list[np.ndarray | None], int]:
    """Each image's features (None where it cannot be decoded) and how many were computed now;
    the others came from `cache_dir/<backbone key>/<sha256>.npy`."""
    folder = cache_dir / spec.cache_key
    out: list[np.ndarray | None] = [None] * len(paths)
    todo = []
    for i, sha in enumerate(shas):
        try:
            out[i] = np.load(folder / f"{sha}.npy", allow_pickle=False)
        except (OSError, ValueError):  # not cached yet, or a damaged file: compute it
            todo.append(i)
    if not todo:
        return out, 0
    # deferred: TensorFlow (the decoder) loads here, so feature_spec checks run before it
    from tasks.predict.images import OK, image_batches

    run = extractor(spec)
    start = 0
    batches = image_batches([paths[i] for i in todo], (spec.size, spec.size), batch_size, STRETCH)
    for pixels, status, _ in batches:
        features = run(pixels)
        for j, ok in enumerate(status.numpy() == OK):
            i = todo[start + j]
            if ok:
                out[i] = features[j]
                _save(folder / f"{shas[i]}.npy", features[j])
        start += len(features)
    return out, len(todo)


def _save(path: Path, vector: np.ndarray) -> None:
    # Not durable: a cache file lost in a crash is recomputed by the next run.
    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.save(f, vector, allow_pickle=False)

    files.write_with(path, save, durable=False)
