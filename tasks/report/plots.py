"""The report's matplotlib figures (Agg, no pyplot state) and image thumbnails, saved as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are written on servers without a display

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from storage.images import open_image

DPI = 100
# What the gate and Pillow raise for a file that cannot (or may not) be decoded; the gate's
# budget error is a DecompressionBombError.
IMAGE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def load_rgb(path: str | Path, size: int | None = None) -> np.ndarray | None:
    """An image as uint8 RGB (thumbnailed to `size` when given); None when it cannot be read."""
    try:
        with open_image(path) as image:
            if size:
                image.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
                image.thumbnail((size, size))
            return np.asarray(image.convert("RGB"))
    except IMAGE_ERRORS:
        return None


def thumbnail(source: str | Path, dest: Path, size: int = 96) -> Path | None:
    """A PNG thumbnail of `source` at `dest`, or None when the image cannot be read."""
    pixels = load_rgb(source, size)
    if pixels is None:
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(dest, format="PNG")
    return dest


def enlarge(source: str | Path, dest: Path, min_width: int = 640) -> Path:
    """A copy of a PNG scaled up by a whole factor (nearest) so small pixel grids are visible."""
    with open_image(source, formats=("PNG",)) as image:
        factor = max(1, -(-min_width // max(image.width, 1)))
        image = image.convert("RGB")
        if factor > 1:
            size = (image.width * factor, image.height * factor)
            image = image.resize(size, Image.Resampling.NEAREST)
        dest.parent.mkdir(parents=True, exist_ok=True)
        image.save(dest, format="PNG")
    return dest


def bar_chart(
    counts: dict[str, dict[str, int]], path: Path, title: str, xlabel: str, ylabel: str
) -> Path:
    """Grouped bars: `counts[group][series]` (e.g. images per class, one bar per split)."""
    groups = list(counts)
    series = sorted({s for per_group in counts.values() for s in per_group})
    fig = Figure(figsize=(max(5, 0.9 * len(groups) + 2), 3.6), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, name in enumerate(series):
        values = [counts[g].get(name, 0) for g in groups]
        bars = ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, groups, rotation=30 if len(groups) > 4 else 0, ha="right")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(title=None, fontsize=8)
    return _save(fig, path)


def epoch_curves(
    epochs: Sequence[int],
    metrics: dict[str, dict[str, Sequence[float | None]]],
    best_epoch: int | None,
    path: Path,
) -> Path:
    """One panel per metric (loss, accuracy), train and validation lines, best epoch marked."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, (metric, lines) in zip(axes, metrics.items(), strict=True):
        for name, values in lines.items():
            y = np.array([np.nan if v is None else v for v in values], dtype=float)
            if not np.isnan(y).all():
                ax.plot(epochs, y, marker="o", markersize=3, label=name)
        if best_epoch is not None:
            ax.axvline(
                best_epoch, color="tab:red", linestyle="--", label=f"best (epoch {best_epoch})"
            )
        ax.set(title=f"{metric} per epoch", xlabel="epoch", ylabel=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def batch_curves(batches: dict[int, tuple[Sequence[int], Sequence[float]]], path: Path) -> Path:
    """The classic batch-history plot: accuracy per batch, one line per epoch."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.add_subplot()
    few = max((len(xs) for xs, _ in batches.values()), default=0) <= 30
    for epoch, (xs, ys) in sorted(batches.items()):
        # Markers, or an epoch of one batch (a tiny dataset) would draw nothing.
        ax.plot(
            xs, ys, linewidth=1, marker="o" if few else None, markersize=3, label=f"epoch {epoch}"
        )
    ax.set(title="training accuracy within each epoch", xlabel="batch", ylabel="accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if len(batches) <= 12:
        ax.legend(fontsize=8, ncols=2)
    return _save(fig, path)


def confusion_plot(matrix: np.ndarray, true_labels: list[str], pred_labels: list[str], path: Path):
    """Counts of (true, predicted) label pairs, with the numbers written in the cells."""
    side = max(4.0, 0.6 * max(len(true_labels), len(pred_labels)) + 2.5)
    fig = Figure(figsize=(side, side * 0.85), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(pred_labels)), pred_labels, rotation=45, ha="right")
    ax.set_yticks(range(len(true_labels)), true_labels)
    top = matrix.max() if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        colour = "white" if top and value > top / 2 else "black"
        ax.text(j, i, str(value), ha="center", va="center", color=colour)
    ax.set(title="confusion matrix (validation)", xlabel="predicted label", ylabel="true label")
    fig.colorbar(im, ax=ax, shrink=0.8, label="images")
    return _save(fig, path)


def image_grid(
    images: Sequence[tuple[np.ndarray, str]], path: Path, title: str, ncols: int = 6
) -> Path:
    """Pictures in a grid, each with a short caption (thumbnails, augmented samples, maps)."""
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    fig = Figure(figsize=(1.6 * ncols + 0.4, 1.75 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, (pixels, caption) in zip(axes, images, strict=False):
        # Floats are 0..1 (see normalise): a fixed range keeps a flat map mid-grey, not black.
        limits = (0.0, 1.0) if pixels.dtype.kind == "f" else (None, None)
        cmap = "gray" if pixels.ndim == 2 else None
        ax.imshow(pixels, cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest")
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def normalise(array: np.ndarray) -> np.ndarray:
    """Stretch values to 0..1 for display (a flat array becomes mid-grey)."""
    array = np.asarray(array, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    return np.full_like(array, 0.5) if high - low < 1e-12 else (array - low) / (high - low)
