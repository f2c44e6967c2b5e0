"""Training-time augmentation: ImageDataGenerator's knobs as Keras preprocessing layers."""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops
from prefect import task

from storage.files import TF_IMAGE_EXTENSIONS
from storage.images import open_image
from tasks.runtime import logger
from tasks.train.settings import Augmentation

# The knobs and their "off" values, from the one declaration (tasks/train/settings.py).
DEFAULTS: dict[str, Any] = Augmentation().model_dump()

Knobs = Mapping[str, Any] | Augmentation | None


def knobs(augmentation: Knobs) -> dict[str, Any]:
    """The knobs as a dict with defaults filled in; accepts a dict or an Augmentation."""
    if isinstance(augmentation, Augmentation):
        augmentation = augmentation.model_dump()
    given = dict(augmentation or {})
    if unknown := set(given) - set(DEFAULTS):
        raise ValueError(f"unknown augmentation knob(s): {sorted(unknown)}")
    merged = {**DEFAULTS, **given}
    merged["zoom_range"] = tuple(merged["zoom_range"])
    if merged["brightness_range"] is not None:
        merged["brightness_range"] = tuple(merged["brightness_range"])
    return merged


@keras.saving.register_keras_serializable(package="pixelpipe")
class RandomBrightnessScale(keras.layers.Layer):
    """Multiply each image by a random factor in [lower, upper], clipped to 0..255, as
    ImageDataGenerator's `brightness_range` does. Keras' RandomBrightness *adds* an offset."""

    def __init__(self, lower, upper, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.lower, self.upper, self.seed = lower, upper, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        n = ops.shape(images)[0]
        factor = keras.random.uniform((n, 1, 1, 1), self.lower, self.upper, seed=self.generator)
        return ops.clip(images * ops.cast(factor, images.dtype), 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(lower=self.lower, upper=self.upper, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="pixelpipe")
class RandomAffine(keras.layers.Layer):
    """Rotation, shifts, shear and zoom as ONE random affine map per image, composed as
    ImageDataGenerator does (rotate . shift . shear . zoom about the centre, each drawn
    uniformly from ± the range), so each image is interpolated once: less blur, and ~2x
    cheaper than chaining Keras' RandomRotation, RandomTranslation, RandomZoom and a shear
    layer (BENCHMARKS.md). The matrix is in (row, column) order, so height_shift_range moves
    rows; today's legacy generator swaps the axes and shifts sideways (tests compare the two)."""

    def __init__(
        self,
        rotation=0.0,
        height_shift=0.0,
        width_shift=0.0,
        shear=0.0,
        zoom=(1.0, 1.0),
        fill_mode="nearest",
        fill_value=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rotation, self.height_shift, self.width_shift = rotation, height_shift, width_shift
        self.shear, self.zoom = shear, tuple(zoom)
        self.fill_mode, self.fill_value, self.seed = fill_mode, fill_value, seed
        self.generator = keras.random.SeedGenerator(seed)

    def _uniform(self, n, limit):
        return keras.random.uniform((n,), -limit, limit, seed=self.generator)

    def call(self, images, training=True):
        if not training:
            return images
        shape = ops.shape(images)
        n, h, w = shape[0], ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")
        theta = self._uniform(n, math.radians(self.rotation))
        tx = self._uniform(n, self.height_shift) * h  # rows, as ImageDataGenerator's tx
        ty = self._uniform(n, self.width_shift) * w
        shear = self._uniform(n, math.radians(self.shear))
        zx = keras.random.uniform((n,), self.zoom[0], self.zoom[1], seed=self.generator)
        zy = keras.random.uniform((n,), self.zoom[0], self.zoom[1], seed=self.generator)
        transform = self.transform(theta, tx, ty, shear, zx, zy, h, w)
        return ops.image.affine_transform(
            images, transform, fill_mode=self.fill_mode, fill_value=self.fill_value
        )

    @staticmethod
    def transform(theta, tx, ty, shear, zx, zy, h, w):
        """(n, 8) affine_transform rows from per-image parameters (radians, pixels, factors):
        ImageDataGenerator's matrix rotate . shift . shear . zoom about the centre."""
        one, zero = ops.ones_like(theta), ops.zeros_like(theta)

        def mat(*rows):  # (n, 3, 3) from nine (n,) entries, row-major, in (row, col) order
            return ops.reshape(ops.stack(rows, axis=1), (-1, 3, 3))

        cos, sin = ops.cos(theta), ops.sin(theta)
        rotate = mat(cos, -sin, zero, sin, cos, zero, zero, zero, one)
        shift = mat(one, zero, tx, zero, one, ty, zero, zero, one)
        shear_m = mat(one, -ops.sin(shear), zero, zero, ops.cos(shear), zero, zero, zero, one)
        zoom = mat(zx, zero, zero, zero, zy, zero, zero, zero, one)
        oy, ox = h / 2 - 0.5, w / 2 - 0.5
        to_centre = mat(one, zero, one * oy, zero, one, one * ox, zero, zero, one)
        back = mat(one, zero, -oy * one, zero, one, -ox * one, zero, zero, one)
        m = to_centre @ rotate @ shift @ shear_m @ zoom @ back  # output (r, c) -> input (r, c)
        # affine_transform wants x (column) first: x_in = a0 x + a1 y + a2, y_in = b0 x + ...
        flat = [m[:, 1, 1], m[:, 1, 0], m[:, 1, 2], m[:, 0, 1], m[:, 0, 0], m[:, 0, 2]]
        return ops.stack([*flat, zero, zero], axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            rotation=self.rotation, height_shift=self.height_shift, width_shift=self.width_shift,
            shear=self.shear, zoom=self.zoom, fill_mode=self.fill_mode,
            fill_value=self.fill_value, seed=self.seed,
        )  # fmt: skip
        return config


def augmentation_layers(augmentation: Knobs, seed: int = 0) -> list[keras.layers.Layer]:
    """The layers for the knobs that are on, in ImageDataGenerator's order (geometry, flips,
    brightness): one RandomAffine for all geometry (one interpolation; faster than a layer
    per knob, bench/bench_input_pipeline.py), with ImageDataGenerator's fill mode."""
    a = types.SimpleNamespace(**knobs(augmentation))
    fill = {"fill_mode": a.fill_mode, "fill_value": a.cval}
    geometry = (a.rotation_range, a.width_shift_range, a.height_shift_range, a.shear_range)
    if any(geometry) or a.zoom_range != (1.0, 1.0):
        affine = RandomAffine(
            a.rotation_range, a.height_shift_range, a.width_shift_range, a.shear_range,
            a.zoom_range, seed=seed, **fill,
        )  # fmt: skip
        return [affine, *photometric_layers(a, seed)]
    return photometric_layers(a, seed)


def photometric_layers(a, seed: int) -> list[keras.layers.Layer]:
    """Flips and brightness, after the geometry (`a`: the knobs as attributes)."""
    layers: list[keras.layers.Layer] = []
    flip = {(True, True): "horizontal_and_vertical", (True, False): "horizontal"}
    flip[(False, True)] = "vertical"
    if mode := flip.get((a.horizontal_flip, a.vertical_flip)):
        layers.append(keras.layers.RandomFlip(mode, seed=seed + 4))
    if a.brightness_range is not None and a.brightness_range != (1.0, 1.0):
        layers.append(RandomBrightnessScale(*a.brightness_range, seed=seed + 5))
    return layers


def build_augmentation(augmentation: Knobs, seed: int = 0) -> keras.Sequential | None:
    """A Sequential of the active augmentation layers, or None when every knob is off."""
    layers = augmentation_layers(augmentation, seed)
    return keras.Sequential(layers, name="augmentation") if layers else None


def sample_images(dataset_dir: str | Path, count: int, image_size: int | None = None) -> np.ndarray:
    """The first image of each class of `train/` in turn (sorted, so the same every time),
    as a float32 batch of raw 0..255 pixels."""
    root = Path(dataset_dir)
    root = root / "train" if (root / "train").is_dir() else root
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    extensions = TF_IMAGE_EXTENSIONS
    files = [sorted(f for f in c.iterdir() if f.suffix.lower() in extensions) for c in classes]
    picked = [f for group in zip(*[iter(g) for g in files], strict=False) for f in group]
    if not picked:
        picked = [f for group in files for f in group]
    picked = picked[:count]
    if not picked:
        raise FileNotFoundError(f"no images under {root}/<class>/")
    arrays = []
    for f in picked:
        with open_image(f) as im:  # a dataset folder may be made by hand: through the gate
            size = image_size or size_of(picked[0])
            arrays.append(np.asarray(im.convert("RGB").resize((size, size))))
    return np.stack(arrays).astype("float32")


def size_of(path: Path) -> int:
    with open_image(path) as im:
        return im.width


def augment_preview(
    dataset_dir: str | Path,
    augmentation: Knobs,
    out_png: str | Path,
    n: int = 8,
    images: int = 4,
    seed: int = 0,
    image_size: int | None = None,
) -> Path:
    """Write a grid PNG: one row per training image, the original first, then `n`
    augmented variants, so a person can see the augmentation before training."""
    from PIL import Image

    batch = sample_images(dataset_dir, images, image_size)
    pipeline = build_augmentation(augmentation, seed)
    columns = [batch]
    for _ in range(n):
        out = pipeline(batch, training=True) if pipeline is not None else batch
        columns.append(np.asarray(ops.convert_to_numpy(out)))
    rows, size, gap = len(batch), batch.shape[1], 2
    grid = np.full(
        (rows * (size + gap) - gap, (n + 1) * (batch.shape[2] + gap) - gap, 3), 255, np.uint8
    )
    for c, column in enumerate(columns):
        for r in range(rows):
            y, x = r * (size + gap), c * (batch.shape[2] + gap)
            grid[y : y + size, x : x + batch.shape[2]] = np.clip(column[r], 0, 255).astype(np.uint8)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out_png)
    logger().info("augmentation preview: %d images x %d variants -> %s", rows, n, out_png)
    return out_png


@task(name="augment-preview")
def augment_preview_task(
    dataset_dir: str,
    augmentation: dict[str, Any] | None,
    out_png: str,
    n: int = 8,
    images: int = 4,
    seed: int = 0,
) -> str:
    """Prefect task around augment_preview (the report stage reuses it)."""
    return str(augment_preview(dataset_dir, augmentation, out_png, n=n, images=images, seed=seed))
