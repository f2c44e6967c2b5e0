"""The per-knob augmentation the benchmark compares with pixelpipe's fused RandomAffine: one
Keras layer per ImageDataGenerator knob (Keras' own where it has one), each with the fill mode.
Only bench/bench_input_pipeline.py uses it."""

from __future__ import annotations

import math
import types

import keras
from keras import ops

from tasks.train.augment import Augmentation, knobs, photometric_layers


class RandomShearDegrees(keras.layers.Layer):
    """Shear by a random angle in [-degrees, degrees] about the image centre, as
    ImageDataGenerator's `shear_range` does. Keras' own RandomShear takes a fraction of the
    image (not an angle), shears about the top-left corner and along both axes at once."""

    def __init__(self, degrees, fill_mode="nearest", fill_value=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.degrees, self.fill_mode, self.fill_value, self.seed = (
            degrees,
            fill_mode,
            fill_value,
            seed,
        )
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or self.degrees == 0:
            return images
        shape = ops.shape(images)
        n, w = shape[0], ops.cast(shape[2], "float32")
        limit = math.radians(self.degrees)
        angle = keras.random.uniform((n,), -limit, limit, seed=self.generator)
        cx = (w - 1.0) / 2.0
        # Output (x, y) samples input (cos(s)·(x-cx)+cx, y - sin(s)·(x-cx)): the classic
        # matrix [[1, -sin s], [0, cos s]] in (row, col) order, centred.
        cos, sin = ops.cos(angle), ops.sin(angle)
        zero, one = ops.zeros_like(angle), ops.ones_like(angle)
        matrix = ops.stack([cos, zero, cx - cos * cx, -sin, one, sin * cx, zero, zero], axis=1)
        return ops.image.affine_transform(
            images, matrix, fill_mode=self.fill_mode, fill_value=self.fill_value
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            degrees=self.degrees,
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
            seed=self.seed,
        )
        return config


def per_knob_layers(augmentation: Augmentation, seed: int = 0) -> list[keras.layers.Layer]:
    """The active knobs as one layer each, in ImageDataGenerator's order."""
    a = types.SimpleNamespace(**knobs(augmentation))
    fill = {"fill_mode": a.fill_mode, "fill_value": a.cval}
    return [*_geometric(a, seed, fill), *photometric_layers(a, seed)]


def _geometric(a, seed: int, fill: dict) -> list[keras.layers.Layer]:
    layers: list[keras.layers.Layer] = []
    if a.rotation_range:
        # Keras measures rotation as a fraction of a full turn.
        layers.append(keras.layers.RandomRotation(a.rotation_range / 360.0, seed=seed, **fill))
    if a.width_shift_range or a.height_shift_range:
        h, w = a.height_shift_range, a.width_shift_range
        layers.append(keras.layers.RandomTranslation((-h, h), (-w, w), seed=seed + 1, **fill))
    if a.shear_range:
        layers.append(RandomShearDegrees(a.shear_range, seed=seed + 2, **fill))
    if a.zoom_range != (1.0, 1.0):
        # ImageDataGenerator: factor z shows z x the image (z > 1 zooms out), drawn
        # independently per axis; Keras' RandomZoom uses 1 + factor the same way.
        low, high = a.zoom_range[0] - 1.0, a.zoom_range[1] - 1.0
        layers.append(keras.layers.RandomZoom((low, high), (low, high), seed=seed + 3, **fill))
    return layers
