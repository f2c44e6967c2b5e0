"""How a model wants its pixels: resize mode (stretch, crop, pad), interpolation, value scaling.

`crop` is the ImageNet evaluation protocol: scale so the short side is size/crop_fraction
(224/0.875 = 256), then take the centre size x size. It is done as one Pillow resize of the
source box that lands in the crop, which samples the very same points as resize-then-crop
(Pillow clamps the filter to the whole image, not the box) and resizes fewer pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

ResizeMode = Literal["stretch", "crop", "pad"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
IMAGENET_CROP_FRACTION = 0.875  # 224/256: the fraction every ImageNet paper since AlexNet uses
PAD_COLOR = (0, 0, 0)


@dataclass(frozen=True)
class Preprocessing:
    """What a model saw in training, so prediction can show it the same."""

    resize_mode: ResizeMode = "stretch"
    interpolation: Interpolation = "nearest"
    crop_fraction: float = 1.0  # crop only: the centre share of the short side kept
    scaling: str = "raw 0-255"  # what maps pixels to the model's inputs (recorded, not applied)

    def describe(self) -> str:
        """The `preprocessing` column: e.g. 'crop(0.875)/bilinear; caffe'."""
        mode = f"crop({self.crop_fraction:g})" if self.resize_mode == "crop" else self.resize_mode
        return f"{mode}/{self.interpolation}; {self.scaling}"

    def with_overrides(
        self,
        resize_mode: str | None = None,
        interpolation: str | None = None,
        crop_fraction: float | None = None,
    ) -> Preprocessing:
        """This protocol with the user's overrides (None keeps the model's choice)."""
        return Preprocessing(
            resize_mode=resize_mode or self.resize_mode,  # type: ignore[arg-type]
            interpolation=interpolation or self.interpolation,  # type: ignore[arg-type]
            crop_fraction=self.crop_fraction if crop_fraction is None else crop_fraction,
            scaling=self.scaling,
        )


def imagenet_standard(scaling: str) -> Preprocessing:
    """Short side to size/0.875, bilinear, centre crop: how ImageNet models are evaluated."""
    return Preprocessing("crop", "bilinear", IMAGENET_CROP_FRACTION, scaling)


def crop_box(
    width: int, height: int, size: tuple[int, int], fraction: float
) -> tuple[float, float, float, float]:
    """The source box that becomes the centre crop after scaling to cover size/fraction."""
    h, w = size
    scale = max(h / (fraction * height), w / (fraction * width))
    # Integer scaled size, as resize-then-crop would make it; then the centre crop in it.
    scaled_w, scaled_h = max(w, round(width * scale)), max(h, round(height * scale))
    left, top = (scaled_w - w) // 2, (scaled_h - h) // 2
    sx, sy = width / scaled_w, height / scaled_h
    return (left * sx, top * sy, (left + w) * sx, (top + h) * sy)


def resize(img: Image.Image, size: tuple[int, int], prep: Preprocessing) -> Image.Image:
    """An RGB image at size (height, width) by the protocol's mode and filter."""
    h, w = size
    resample = Image.Resampling[prep.interpolation.upper()]
    if prep.resize_mode == "stretch":
        return img.resize((w, h), resample)
    if prep.resize_mode == "crop":
        box = crop_box(img.width, img.height, size, prep.crop_fraction)
        return img.resize((w, h), resample, box=box)
    scale = min(w / img.width, h / img.height)
    inner = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    canvas = Image.new("RGB", (w, h), PAD_COLOR)
    canvas.paste(img.resize(inner, resample), ((w - inner[0]) // 2, (h - inner[1]) // 2))
    return canvas


def to_array(img: Image.Image) -> np.ndarray:
    """float32 (h, w, 3) 0-255, as keras.utils.img_to_array gives it."""
    return np.asarray(img, dtype=np.float32)
