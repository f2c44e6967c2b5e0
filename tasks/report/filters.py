"""The report's Filters section: learned first-layer kernels and classic fixed kernels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from tasks.report.document import Facts, Figure, Section, Text, short
from tasks.report.plots import image_grid, load_rgb, normalise

# Classic hand-made kernels: what a convolution does before any learning.
CLASSIC_KERNELS: dict[str, np.ndarray] = {
    "edges (Laplacian)": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], float),
    "horizontal edges (Sobel)": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], float),
    "vertical edges (Sobel)": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], float),
    "blur (3×3 box)": np.full((3, 3), 1 / 9),
}


def classic_maps(gray: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Each classic kernel convolved over a grey image (values 0..1), edges clamped."""
    return [
        (name, ndimage.convolve(gray, kernel, mode="nearest"))
        for name, kernel in CLASSIC_KERNELS.items()
    ]


def to_gray(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


@dataclass
class LearnedFilters:
    layer: str
    kernels: np.ndarray  # (kh, kw, in_channels, filters)
    maps: np.ndarray  # (h, w, filters): the layer's output on the sample image
    input_size: tuple[int, int]


def _preprocessing(keras) -> tuple[type, ...]:
    return (keras.layers.Rescaling, keras.layers.ZeroPadding2D, keras.layers.Conv2D)


def _first_conv(layers, keras, before: list) -> object | None:
    """The first Conv2D with a spatial kernel, looking inside nested models (a ResNet50 base).

    1×1 convolutions (e.g. resnet50_transfer's fixed RGB->BGR "preprocess") have no pattern
    to show: like Rescaling and padding they are collected in `before`, to be applied first.
    """
    for layer in layers:
        if isinstance(layer, keras.layers.Conv2D) and max(layer.kernel_size) > 1:
            return layer
        if isinstance(layer, keras.Model):
            if found := _first_conv(layer.layers, keras, before):
                return found
        elif isinstance(layer, _preprocessing(keras)):
            before.append(layer)
    return None


def learned_filters(model_path: Path, rgb: np.ndarray) -> LearnedFilters | None:
    """Kernels of the model's first spatial Conv2D and that layer's output on `rgb`.

    The image is resized to the model's input size and passed through the preprocessing
    layers before that convolution, so the maps are what the layer really computes on it.
    None when the model has no such layer.
    """
    import keras  # heavy: only when a trained model exists

    model = keras.saving.load_model(model_path, compile=False)
    before: list = []
    conv = _first_conv(model.layers, keras, before)
    if conv is None:
        return None
    _, height, width, channels = model.input_shape
    height, width = height or rgb.shape[0], width or rgb.shape[1]
    image = Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR)
    x = np.asarray(image, dtype=np.float32)
    if channels == 1:
        x = x @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
    x = x[None]
    for layer in before:
        x = layer(x)
    maps = keras.ops.convert_to_numpy(conv(x))[0]
    return LearnedFilters(conv.name, conv.get_weights()[0], maps, (height, width))


def _map_caption(feature_map: np.ndarray, i: int) -> str:
    flat = float(np.ptp(feature_map)) < 1e-9
    return f"map {i} (all {float(feature_map.flat[0]):.3g})" if flat else f"map {i}"


def _kernel_picture(kernel: np.ndarray) -> np.ndarray:
    """One filter as a picture: RGB when it reads 3 channels, else its mean over channels."""
    if kernel.shape[2] == 3:
        return normalise(kernel)
    return normalise(kernel.mean(axis=2))


def _learned_blocks(learned: LearnedFilters, rgb: np.ndarray, image: Path, folder: Path, n: int):
    kh, kw, cin, total = learned.kernels.shape
    n = min(n, total)
    kernels = [(_kernel_picture(learned.kernels[..., i]), f"filter {i}") for i in range(n)]
    maps = [(np.asarray(rgb), "input")] + [
        (normalise(learned.maps[..., i]), _map_caption(learned.maps[..., i], i)) for i in range(n)
    ]
    size = f"{learned.input_size[0]}×{learned.input_size[1]}"
    return [
        Facts(
            [
                ("first conv layer", learned.layer),
                ("filters", str(total)),
                ("kernel", f"{kh}×{kw}×{cin}"),
                ("input", size),
            ]
        ),
        Figure(
            image_grid(kernels, folder / "filters_learned.png", "learned first-layer filters"),
            f"The first {n} of {total} learned {kh}×{kw} kernels of layer {learned.layer}.",
        ),
        Figure(
            image_grid(maps, folder / "filters_maps.png", "feature maps on one image"),
            f"What those filters respond to in {short(str(image))} (bright = strong).",
        ),
    ]


def filters_section(
    image_path: Path, model_path: Path | None, folder: Path, max_filters: int
) -> Section | None:
    """The Filters section for one dataset image (None when the image cannot be read)."""
    rgb = load_rgb(image_path, 256)
    if rgb is None:
        return None
    section = Section("filters", "Filters")
    learned = learned_filters(model_path, rgb) if model_path else None
    if learned is None:
        why = "no trained model (best.keras)" if model_path is None else "no Conv2D layer"
        section.blocks.append(Text(f"Learned filters are not shown: {why} for this run."))
    else:
        section.blocks += _learned_blocks(learned, rgb, image_path, folder, max_filters)
    gray = to_gray(rgb)
    classic = [(gray, "original (grey)")] + [(normalise(m), name) for name, m in classic_maps(gray)]
    section.blocks.append(
        Figure(
            image_grid(classic, folder / "filters_classic.png", "classic fixed kernels"),
            "Hand-made 3×3 kernels convolved over the same image (scipy.ndimage.convolve).",
        )
    )
    return section
