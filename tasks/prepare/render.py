"""Decode, clean and resize images across a process pool; free of Prefect so workers start fast."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from joblib.externals.loky import get_reusable_executor
from PIL import ExifTags, Image, ImageOps, PngImagePlugin

from storage import files
from storage.files import MAX_PIXELS, is_image_name
from storage.images import ImageBudgetError, open_image
from tasks.prepare.near_duplicates import GRAY, image_hash

OUTPUT_SUFFIX = {"jpeg": ".jpg", "png": ".png"}
OUTPUT_FORMATS = ("JPEG", "PNG")
PAD_COLOR = (0, 0, 0)
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90 degrees
# Decode JPEGs at >= 2x the pixels needed, then reduce() to >= 3x before the filter: as good as
# filtering from full size to the eye, several times faster on big photos (Pillow's thumbnail()).
DRAFT_GAP, REDUCING_GAP = 2.0, 3.0
# Both are antialiased in Pillow (the support widens with the scale). BICUBIC, the default,
# costs ~25% less CPU per resize (most of the work on ~500 px photos); LANCZOS is a little
# sharper (outputs at 224 px differ by PSNR 44 dB median, 36 dB worst: BENCHMARKS.md).
RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class RenderSettings:
    """Everything that changes an output's pixels: a change re-renders every image."""

    image_size: int = 224
    resize_mode: str = "stretch"
    image_format: str = "jpeg"
    quality: int = 95
    resample: str = "bicubic"

    @property
    def suffix(self) -> str:
        return OUTPUT_SUFFIX[self.image_format]

    @cached_property  # once per settings object, not once per image (it names every output)
    def fingerprint(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# Every output carries a tag (a JPEG comment, a PNG text chunk) naming the settings that made
# it and its name: the next run reuses a file only when the tag says this run would make it,
# and deletes only files tagged as ours. A file put there by hand has no tag.
TAG_KEY = "pixelpipe"
_TAG_PREFIX = "pixelpipe-output v1"


def output_tag(settings: RenderSettings, name: str) -> str:
    return f"{_TAG_PREFIX} {settings.fingerprint} {name}"


def read_tag(path: str | Path) -> str | None:
    """The tag of a file pixelpipe rendered (from the header only), else None."""
    try:  # an output folder may hold anything: only our two formats are opened (headers only)
        with Image.open(path, formats=OUTPUT_FORMATS) as img:
            tag = img.info.get("comment") if img.format == "JPEG" else img.info.get(TAG_KEY)
    except Exception:  # unreadable, not an image, vanished: not a file we can vouch for
        return None
    if isinstance(tag, bytes):
        tag = tag.decode("utf-8", "replace")
    return tag if isinstance(tag, str) and tag.startswith(_TAG_PREFIX) else None


def made_by_us(path: str | Path) -> bool:
    """Whether pixelpipe rendered this file at this name (with any settings)."""
    tag = read_tag(path)
    return tag is not None and tag.rsplit(" ", 1)[-1] == _stem(path)


def made_with(path: str | Path, settings: RenderSettings) -> bool:
    """Whether this file is pixelpipe's output for its name with exactly these settings."""
    return read_tag(path) == output_tag(settings, _stem(path))


def _stem(path: str | Path) -> str:
    """The file name without its suffix, as Path.stem, without building a Path: a Path per
    file interns its parts, and at 100,000 outputs the table of interned names never shrinks."""
    return os.path.splitext(os.path.basename(path))[0]


# ---------------------------------------------------------------- decoding and resizing (pure)


def inspect_file(path: str, max_pixels: int = MAX_PIXELS) -> dict[str, Any]:
    """sha256 of the bytes, the displayed size and format from the header, and the perceptual
    hash of a reduced decode (a JPEG at 1/8 scale), plus its pixel statistics. Over a decode
    budget (`max_pixels`, the JPEG scan cap: storage/images.py) the file is `unsupported` from
    its headers, so no worker ever decodes it."""
    with open(path, "rb") as f:
        info: dict[str, Any] = {"sha256": hashlib.file_digest(f, "sha256").hexdigest()}
    if not is_image_name(path):  # inspect runs in the flow process: no Path per file
        return info
    try:
        with open_image(path, max_pixels=max_pixels) as img:
            width, height = img.size
            if img.getexif().get(ExifTags.Base.Orientation, 1) in _SWAPS_AXES:
                width, height = height, width
            info.update(width=width, height=height, format=img.format)
            info.update(_hash_and_stats(img))
    except ImageBudgetError as e:
        if e.size:  # what the header says, as for any other row
            info.update(width=e.size[0], height=e.size[1])
        info.update(format=e.format)
        info.update(status="unsupported", error=str(e))
    except Image.DecompressionBombError as e:  # Pillow's own limit, met inside Image.open
        info.update(status="unsupported", error=f"too many pixels: {e}")
    except Exception as e:  # any reader failure is a `corrupt` row, never a crash
        info.update(status="corrupt", error=_describe(e))
    return info


def _hash_and_stats(img: Image.Image) -> dict[str, Any]:
    # A file whose pixels do not decode gets no hash; rendering then decides its status.
    try:
        phash, centre, small = image_hash(img)
    except Exception:
        return {}
    gray = small @ GRAY
    return {
        "phash": phash,
        "phash_centre": centre,
        "mean_color": [round(float(c), 2) for c in small.mean(axis=(0, 1))],
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
    }


def to_8bit(img: Image.Image) -> Image.Image:
    """8-bit RGB from any mode (transparency composited on white, 16-bit scaled, not clipped),
    or 8-bit gray ("L") for a gray picture: what fit() resizes. Resizing "L", then replicating
    it into RGB, gives the very pixels of resizing its RGB (each band is filtered alone, with
    the same integer weights) at a third of the work."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _to_8bit_gray(img)
    has_alpha = img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode in ("RGB", "L") else img.convert("RGB")


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


def fit(img: Image.Image, size: int, mode: str, resample: str) -> Image.Image:
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
    canvas = Image.new(img.mode, (size, size), PAD_COLOR if img.mode == "RGB" else PAD_COLOR[0])
    resized = img.resize(inner, resampling, reducing_gap=REDUCING_GAP)
    canvas.paste(resized, ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return canvas


def load_8bit(img: Image.Image, settings: RenderSettings) -> Image.Image:
    """Decode (a big JPEG at reduced scale), apply EXIF orientation, convert to 8-bit RGB or
    gray (to_8bit): what render_file resizes."""
    if img.format == "JPEG":
        target = (settings.image_size, settings.image_size)
        img.draft(None, draft_request(img.size, target, settings.resize_mode))
    ImageOps.exif_transpose(img, in_place=True)  # loads the pixels
    return to_8bit(img)


def render_file(source: str, output: str, settings: RenderSettings) -> tuple[str, str | None]:
    """Decode, clean, resize and atomically write one image; (status, error) for its row."""
    try:
        with open_image(source) as img:  # the same gate as inspect_file (and its defaults)
            pixels = load_8bit(img, settings)
            rendered = fit(pixels, settings.image_size, settings.resize_mode, settings.resample)
        if rendered.mode != "RGB":  # a gray picture, resized as gray (to_8bit)
            rendered = rendered.convert("RGB")
        save_atomic(rendered, Path(output), settings)
    except ImageBudgetError as e:
        return "unsupported", str(e)
    except Image.DecompressionBombError as e:
        return "unsupported", f"too many pixels: {e}"
    except Exception as e:  # a file that does not decode is a `corrupt` row, never a crash
        return "corrupt", _describe(e)
    return "ok", None


def save_atomic(img: Image.Image, path: Path, settings: RenderSettings) -> None:
    """Write to a hidden temporary name, then rename: readers never see half a file."""
    tag = output_tag(settings, path.stem)
    # Encoded in memory, then written in one call: Pillow's encoder writing straight to a file
    # makes a system call per buffer and cost ~2.5x the encoding itself (bench_prepare --profile).
    encoded = io.BytesIO()
    if settings.image_format == "jpeg":
        img.save(encoded, format="JPEG", quality=settings.quality, comment=tag)
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text(TAG_KEY, tag)
        img.save(encoded, format="PNG", pnginfo=info)
    # Not durable: a rendered image is remade from its source by any re-run; an fsync per
    # image would cost more than rendering it.
    files.write_with(path, lambda tmp: tmp.write_bytes(encoded.getbuffer()), durable=False)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


# ---------------------------------------------------------------- process pool

# loky's workers start a fresh interpreter that never re-imports `__main__` (unlike forkserver
# and spawn), so the pool works from `python -`, a script without a main guard, a notebook.
# Each worker imports what it needs once, in its initializer (this module: NumPy and Pillow,
# not SciPy), and stays warm for every batch of the run: the flow shuts the pool down at its end.
POOL_IDLE_S = 60  # idle workers exit after this; the next batch starts them again
ITEM_TIMEOUT_S = 120  # the longest one image may take to decode and resize in a worker
# A batch's bound on top of that: ~100x what a big photo takes, so only a hung worker hits it.
BATCH_S_PER_IMAGE = 2.0
# ~4 chunks per worker: few round trips (one per chunk, results are short tuples, never
# pixels) and still an even finish when some images are big.
CHUNKS_PER_WORKER = 4
Render = Callable[[str, str, RenderSettings], tuple[str, str | None]]
Warn = Callable[[str], object]
_log = logging.getLogger("pixelpipe.prepare")
_pool: Executor | None = None
_isolating = threading.Lock()  # one batch at a time finds the file that breaks the pool
_PROBE_IMAGE = (8, 8)


def _warm_worker() -> None:
    """A worker's initializer: loky imported this module to call it; register every Pillow
    format plugin now too, so that no batch pays for an import."""
    Image.init()


def get_pool(workers: int) -> Executor:
    """The process-wide reusable loky executor with `workers` processes (a broken or shut
    down one is replaced by a new one)."""
    global _pool
    _pool = get_reusable_executor(
        max_workers=workers, timeout=POOL_IDLE_S, initializer=_warm_worker
    )
    return _pool


def start_pool(workers: int) -> None:
    """Start the workers without waiting for them: they import while this process does other
    work (e.g. inspecting files), and the first batch finds them warm. No-op for one worker."""
    if workers > 1:
        get_pool(workers).submit(int)  # loky starts every worker at the first submit


def shutdown_pool(kill: bool = False) -> None:
    """Stop the worker processes (the flow calls this when it ends; `kill` for hung ones)."""
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, kill_workers=kill)


def render_many(
    items: Sequence[tuple[str, str]],
    settings: RenderSettings,
    workers: int,
    render: Render = render_file,
    warn: Warn = _log.warning,
) -> list[tuple[str, str | None]]:
    """`render` over (source, output) pairs, across `workers` processes when above 1.

    If the pool breaks, the batch is redone one file at a time; a file is `corrupt` only when
    it breaks (or hangs) a worker twice and a known-good probe image then renders in a fresh
    one. A pool that cannot render the probe is our failure, not the data's: the rest of the
    batch is rendered in this process, with a warning."""
    if workers <= 1 or len(items) <= 1:
        return [render(src, out, settings) for src, out in items]
    sources, outputs = zip(*items, strict=True)
    chunk = max(1, len(items) // (workers * CHUNKS_PER_WORKER))
    try:
        pool = get_pool(workers)
        results = pool.map(
            render, sources, outputs, [settings] * len(items), chunksize=chunk,
            timeout=ITEM_TIMEOUT_S + BATCH_S_PER_IMAGE * len(items) / workers,
        )  # fmt: skip
        return list(results)
    except (BrokenProcessPool, CancelledError, RuntimeError, TimeoutError) as error:
        # A worker died or hung, or another batch's recovery replaced the shared pool.
        if isinstance(error, TimeoutError):
            shutdown_pool(kill=True)  # the hung worker would hold its slot for ever
        with _isolating:
            return _render_isolated(items, settings, workers, render, warn)


def _render_isolated(
    items: Sequence[tuple[str, str]], settings: RenderSettings, workers: int, render: Render,
    warn: Warn,
) -> list[tuple[str, str | None]]:  # fmt: skip
    results: list[tuple[str, str | None]] = []
    for n, (src, out) in enumerate(items):
        status = _render_in_pool(src, out, settings, workers, render)
        if status is None:
            status = _render_in_pool(src, out, settings, workers, render)  # a neighbour's crash?
        if status is None:
            if not _probe(settings, workers):
                warn(
                    "the image process pool is broken (a known-good probe image does not render"
                    f" in it): rendering the other {len(items) - n} image(s) of this batch in"
                    " this process"
                )
                return results + [render(s, o, settings) for s, o in items[n:]]
            status = ("corrupt", "decoding this file crashed or hung its worker process")
        results.append(status)
    return results


def _render_in_pool(
    src: str, out: str, settings: RenderSettings, workers: int, render: Render
) -> tuple[str, str | None] | None:
    """One file in the pool; None if it broke (or hung) its worker, after replacing the pool."""
    try:
        return get_pool(workers).submit(render, src, out, settings).result(ITEM_TIMEOUT_S)
    except (BrokenProcessPool, CancelledError, RuntimeError, TimeoutError):
        shutdown_pool(kill=True)
        return None


def _probe(settings: RenderSettings, workers: int) -> bool:
    """Whether a fresh pool renders a tiny generated image: tells a broken pool from a bad file."""
    with tempfile.TemporaryDirectory(prefix="pixelpipe-probe-") as folder:
        source, output = Path(folder, "probe.png"), Path(folder, "probe" + settings.suffix)
        Image.new("RGB", _PROBE_IMAGE, (200, 30, 30)).save(source)
        result = _render_in_pool(str(source), str(output), settings, workers, render_file)
        return result == ("ok", None) and output.is_file()
