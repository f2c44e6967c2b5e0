"""Decode, clean and resize images across a process pool; free of Prefect so workers start fast."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps

from storage import files
from storage.files import IMAGE_EXTENSIONS

OUTPUT_SUFFIX = {"jpeg": ".jpg", "png": ".png"}
PAD_COLOR = (0, 0, 0)
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90 degrees
# Decode JPEGs at >= 2x the pixels needed, then reduce() to >= 3x before the filter: as good as
# filtering from full size to the eye, several times faster on big photos (Pillow's thumbnail()).
DRAFT_GAP, REDUCING_GAP = 2.0, 3.0
# Both are antialiased in Pillow (the support widens with the scale). LANCZOS is the sharper;
# BICUBIC costs about 40% less CPU per resize, which is most of the work on ~500 px photos.
RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class RenderSettings:
    """Everything that changes an output's pixels: a change re-renders every image."""

    image_size: int = 224
    resize_mode: str = "stretch"
    image_format: str = "jpeg"
    quality: int = 95
    resample: str = "lanczos"

    @property
    def suffix(self) -> str:
        return OUTPUT_SUFFIX[self.image_format]


# ---------------------------------------------------------------- decoding and resizing (pure)


def inspect_file(path: str) -> dict[str, Any]:
    """sha256 of the bytes, and the displayed size and format from the header (no decode)."""
    with open(path, "rb") as f:
        info: dict[str, Any] = {"sha256": hashlib.file_digest(f, "sha256").hexdigest()}
    if Path(path).suffix.lower() not in IMAGE_EXTENSIONS:
        return info
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.getexif().get(ExifTags.Base.Orientation, 1) in _SWAPS_AXES:
                width, height = height, width
            info.update(width=width, height=height, format=img.format)
    except Image.DecompressionBombError as e:
        info.update(status="unsupported", error=f"too many pixels: {e}")
    except Exception as e:  # any reader failure is a `corrupt` row, never a crash
        info.update(status="corrupt", error=_describe(e))
    return info


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: transparency composited on white, 16-bit scaled (not clipped)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _to_8bit_gray(img)
    has_alpha = img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    # Pillow's own convert("L") clips 16-bit values at 255 (a white picture); scale instead.
    values = np.asarray(img, dtype=np.float64)
    peak = float(values.max(initial=0.0))
    if img.mode.startswith("I;16") or peak > 255:
        values = values / 257.0
    elif img.mode == "F" and peak <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def draft_request(size: tuple[int, int], target: tuple[int, int], mode: str) -> tuple[int, int]:
    """The smallest size to decode a JPEG at that still leaves DRAFT_GAP x the pixels needed."""
    (w, h), (tw, th) = size, target
    if mode == "stretch":
        need = (tw, th)
    else:
        scale = max(tw / w, th / h) if mode == "crop" else min(tw / w, th / h)
        need = (w * scale, h * scale)
    return (min(w, round(need[0] * DRAFT_GAP)), min(h, round(need[1] * DRAFT_GAP)))


def fit(img: Image.Image, size: int, mode: str, resample: str = "lanczos") -> Image.Image:
    """Resize to size x size: `stretch`, `crop` (center crop to the aspect) or `pad` (letterbox)."""
    w, h = img.size
    resampling = RESAMPLE[resample]
    if mode == "stretch":
        return img.resize((size, size), resampling, reducing_gap=REDUCING_GAP)
    if mode == "crop":
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        box = (left, top, left + side, top + side)
        return img.resize((size, size), resampling, box=box, reducing_gap=REDUCING_GAP)
    scale = size / max(w, h)
    inner = (max(1, round(w * scale)), max(1, round(h * scale)))
    canvas = Image.new("RGB", (size, size), PAD_COLOR)
    resized = img.resize(inner, resampling, reducing_gap=REDUCING_GAP)
    canvas.paste(resized, ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return canvas


def load_rgb(img: Image.Image, settings: RenderSettings) -> Image.Image:
    """Decode (a big JPEG at reduced scale), apply EXIF orientation, convert to RGB."""
    if img.format == "JPEG":
        target = (settings.image_size, settings.image_size)
        img.draft(None, draft_request(img.size, target, settings.resize_mode))
    ImageOps.exif_transpose(img, in_place=True)  # loads the pixels
    return to_rgb(img)


def render_file(source: str, output: str, settings: RenderSettings) -> tuple[str, str | None]:
    """Decode, clean, resize and atomically write one image; (status, error) for its row."""
    try:
        with Image.open(source) as img:
            rgb = load_rgb(img, settings)
            rendered = fit(rgb, settings.image_size, settings.resize_mode, settings.resample)
        save_atomic(rendered, Path(output), settings)
    except Image.DecompressionBombError as e:
        return "unsupported", f"too many pixels: {e}"
    except Exception as e:  # a file that does not decode is a `corrupt` row, never a crash
        return "corrupt", _describe(e)
    return "ok", None


def save_atomic(img: Image.Image, path: Path, settings: RenderSettings) -> None:
    """Write to a hidden temporary name, then rename: readers never see half a file."""
    if settings.image_format == "jpeg":
        save = partial(img.save, format="JPEG", quality=settings.quality)
    else:
        save = partial(img.save, format="PNG")
    # Not durable: a rendered image is remade from its source by any re-run; an fsync per
    # image would cost more than rendering it.
    files.write_with(path, save, durable=False)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


# ---------------------------------------------------------------- process pool


_pool_lock = threading.Lock()
_pool: tuple[int, ProcessPoolExecutor] | None = None


def get_pool(workers: int) -> ProcessPoolExecutor:
    """One pool per process, reused by every batch. forkserver, not fork: Prefect's threads
    make fork unsafe; the server imports this module once and forks the workers from it."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != workers:
            if _pool is not None:
                _pool[1].shutdown(wait=False, cancel_futures=True)
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            _pool = (workers, ProcessPoolExecutor(workers, mp_context=context))
        return _pool[1]


def shutdown_pool() -> None:
    """Stop the worker processes (the flow calls this when it ends)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool[1].shutdown(wait=True, cancel_futures=True)
            _pool = None


def render_many(
    items: Sequence[tuple[str, str]], settings: RenderSettings, workers: int
) -> list[tuple[str, str | None]]:
    """render_file over (source, output) pairs, across `workers` processes when above 1."""
    if workers <= 1 or len(items) <= 1:
        return [render_file(src, out, settings) for src, out in items]
    sources, outputs = zip(*items, strict=True)
    chunk = max(1, len(items) // (workers * 4))
    try:
        pool = get_pool(workers)
        settings_each = [settings] * len(items)
        return list(pool.map(render_file, sources, outputs, settings_each, chunksize=chunk))
    except (BrokenProcessPool, CancelledError, RuntimeError):
        # A worker died, or another batch's recovery shut the shared pool down under us.
        return _render_isolated(items, settings, workers)


def _render_isolated(
    items: Sequence[tuple[str, str]], settings: RenderSettings, workers: int
) -> list[tuple[str, str | None]]:
    # A decoder crashed a worker (a segfault on a hostile file): redo the batch one file at a
    # time so only the file that kills its process is marked, and the pool is rebuilt.
    shutdown_pool()
    results = []
    for src, out in items:
        try:
            results.append(get_pool(workers).submit(render_file, src, out, settings).result())
        except BrokenProcessPool:
            shutdown_pool()
            results.append(("corrupt", "decoding this file crashed its worker process"))
    return results
