"""Offline demo material: procedural mountain/forest pictures and a small gallery website."""

from __future__ import annotations

import functools
import html
import shutil
import threading
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("mountain", "forest")
FULL_SIZE = (160, 120)  # the pictures behind the thumbnails: what the demo learns from
THUMB_SIZE = (56, 42)  # below the demo's min_size, so the scraper rejects them as too_small


# --- pictures -------------------------------------------------------------------------------


def _vgradient(size: tuple[int, int], top, bottom) -> np.ndarray:
    w, h = size
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    column = (1 - t) * np.asarray(top, float) + t * np.asarray(bottom, float)
    return np.repeat(column, w, axis=1)


def _ridge(rng: np.random.Generator, w: int, base: float, height: float, rough: float):
    """A jagged mountain skyline: a few peaks plus midpoint-style noise (y per column)."""
    x = np.arange(w)
    y = np.full(w, base, float)
    for _ in range(rng.integers(1, 4)):
        cx, half = rng.uniform(-0.1, 1.1) * w, rng.uniform(0.25, 0.6) * w
        peak = height * rng.uniform(0.6, 1.0)
        y -= np.clip(peak * (1 - np.abs(x - cx) / half), 0, None)
    noise = np.cumsum(rng.normal(0, rough, w))
    return y + noise - noise.mean()


def _sky(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    kind = rng.choice(["day", "dusk", "overcast"], p=[0.55, 0.25, 0.2])
    top, bottom = {
        "day": ([40, 90, 190], [170, 205, 240]),
        "dusk": ([60, 50, 120], [250, 150, 90]),
        "overcast": ([120, 125, 135], [200, 200, 205]),
    }[kind]
    jitter = rng.uniform(-25, 25, 3)
    return _vgradient(size, np.add(top, jitter), np.add(bottom, jitter))


def draw_mountain(rng: np.random.Generator, size: tuple[int, int] = FULL_SIZE) -> Image.Image:
    """A smooth sky over one to three layered ranges with snow caps; sometimes grassy slopes,
    a lake, or a line of trees in the foothills (so "has trees" alone does not decide)."""
    w, h = size
    pixels = _sky(rng, size)
    rows = np.arange(h)[:, None]
    layers = int(rng.integers(1, 4))
    for i in range(layers):
        depth = (i + 1) / layers  # back ranges are paler (atmospheric perspective)
        ridge = _ridge(rng, w, h * (0.55 + 0.15 * i), h * rng.uniform(0.3, 0.5), 0.8)
        rock = np.array(
            rng.choice([[95, 95, 110], [110, 90, 75], [80, 85, 120], [70, 75, 80], [70, 110, 60]])
        )
        rock = rock + rng.uniform(-20, 20, 3)
        haze = np.array([190, 200, 215]) * (1 - depth) * 0.6
        colour = rock * (0.4 + 0.6 * depth) + haze
        below = rows >= ridge[None, :]
        shade = (rows - ridge[None, :]) / h  # darker further down the slope
        layer = colour[None, None, :] * (1 - 0.5 * np.clip(shade, 0, 1))[..., None]
        snow_line = ridge.min() + h * rng.uniform(0.05, 0.12)
        snow = below & (rows < snow_line) & (rows < ridge[None, :] + h * 0.1)
        pixels = np.where(below[..., None], layer, pixels)
        pixels = np.where(snow[..., None], np.array([235, 238, 245]) * (0.8 + 0.2 * depth), pixels)
    if rng.random() < 0.35:  # a lake: a calm band mirroring the sky colour
        top = int(h * rng.uniform(0.8, 0.9))
        pixels[top:] = pixels[:1].mean(axis=(0, 1)) * 0.7
    if rng.random() < 0.4:  # a treeline in the foothills
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        base = h * rng.uniform(0.92, 1.0)
        for x in np.sort(rng.uniform(0, w, int(rng.integers(4, 12)))):
            _tree(draw, rng, x, base, int(h * rng.uniform(0.2, 0.4)))
        pixels = np.asarray(image, float)
    return _finish(rng, pixels, blur=0.6)


def _tree(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, base: float, h: int):
    height = h * rng.uniform(0.35, 0.8)
    trunk = max(2, height * 0.06)
    bark = tuple(int(v) for v in rng.uniform([60, 35, 20], [110, 75, 50]))
    draw.rectangle([x - trunk / 2, base - height, x + trunk / 2, base], fill=bark)
    autumn = rng.random() < 0.25
    hue = [200, 110, 30] if autumn else [40, 120, 45]
    leaf = tuple(int(v) for v in np.clip(np.add(hue, rng.uniform(-35, 35, 3)), 0, 255))
    width = height * rng.uniform(0.25, 0.45)
    if rng.random() < 0.55:  # conifer: stacked triangles
        for k in range(3):
            top = base - height + k * height * 0.22
            draw.polygon(
                [
                    (x, top),
                    (x - width / 2, top + height * 0.4),
                    (x + width / 2, top + height * 0.4),
                ],
                fill=leaf,
            )
    else:  # broadleaf: a cluster of blobs
        for _ in range(5):
            cx = x + rng.uniform(-0.3, 0.3) * width
            cy = base - height + rng.uniform(0.1, 0.45) * height
            r = width * rng.uniform(0.25, 0.4)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=leaf)


def draw_forest(rng: np.random.Generator, size: tuple[int, int] = FULL_SIZE) -> Image.Image:
    """Dense rows of conifers and broadleaf trees (some autumnal) over a forest floor."""
    w, h = size
    canopy = np.add([25, 60, 30], rng.uniform(-15, 15, 3))
    pixels = _vgradient(size, canopy * 0.6, canopy * 1.2)
    sparse = rng.random() < 0.3  # a clearing: fewer trees, more sky
    if sparse or rng.random() < 0.4:  # sky through the canopy
        top = int(h * (rng.uniform(0.25, 0.45) if sparse else rng.uniform(0.1, 0.25)))
        pixels[:top] = _sky(rng, (w, h))[:top]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for row in range(3):  # back rows first, smaller and higher
        base = h * (0.6 + 0.17 * row)
        count = rng.integers(2, 5) if sparse else rng.integers(6, 12)
        for x in np.sort(rng.uniform(0, w, int(count))):
            _tree(draw, rng, x, base + rng.uniform(-4, 4), int(h * (0.6 + 0.2 * row)))
    floor = tuple(int(v) for v in rng.uniform([50, 45, 20], [100, 90, 40]))
    draw.rectangle([0, int(h * 0.95), w, h], fill=floor)
    pixels = np.asarray(image, float)
    if rng.random() < 0.3:  # morning fog: lower contrast, paler colours
        pixels = pixels + rng.uniform(0.3, 0.6) * (np.array([200, 205, 210]) - pixels)
    return _finish(rng, pixels, blur=0.4)


def _finish(rng: np.random.Generator, pixels: np.ndarray, blur: float) -> Image.Image:
    """Sensor-like noise and a light blur, so no two pictures share exact colours."""
    noisy = pixels + rng.normal(0, rng.uniform(3, 9), pixels.shape)
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(blur))


DRAW = {"mountain": draw_mountain, "forest": draw_forest}


def generate_pictures(out_dir: Path, per_class: int, seed: int = 0) -> dict[str, list[Path]]:
    """Write `per_class` JPEGs per class as out_dir/<class>/<class>-NNN.jpg (deterministic)."""
    written: dict[str, list[Path]] = {}
    for index, label in enumerate(CLASSES):
        rng = np.random.default_rng([seed, index])
        folder = out_dir / label
        folder.mkdir(parents=True, exist_ok=True)
        written[label] = []
        for i in range(per_class):
            path = folder / f"{label}-{i:03d}.jpg"
            DRAW[label](rng).save(path, quality=90)
            written[label].append(path)
    return written


# --- gallery website --------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta property="og:image" content="{og_image}">{next_link}
<style>body{{font-family:sans-serif}} figure{{display:inline-block;margin:6px}}</style>
</head><body><h1>{title}</h1>
{figures}
<p><a href="../index.html">All galleries</a>{next_anchor}</p>
</body></html>
"""


def _figure(form: int, name: str, alt: str) -> str:
    """One picture in one of four markup forms a scraper must understand."""
    full, thumb = f"full/{name}", f"thumb/{name}"
    tw, th = THUMB_SIZE
    if form == 0:  # thumbnail linking to the full-size picture
        body = f'<a href="{full}"><img src="{thumb}" alt="{alt}" width="{tw}" height="{th}"></a>'
    elif form == 1:  # responsive image: the largest srcset candidate is the full picture
        body = (
            f'<img src="{thumb}" srcset="{thumb} {tw}w, {full} {FULL_SIZE[0]}w" '
            f'sizes="(max-width: 600px) 100vw, {FULL_SIZE[0]}px" alt="{alt}">'
        )
    elif form == 2:  # lazy loading: a placeholder src, the real picture in data-src
        body = f'<img class="lazy" src="../static/spacer.gif" data-src="{full}" alt="{alt}">'
    else:  # <picture> with a 2x source
        body = (
            f'<picture><source type="image/jpeg" srcset="{thumb} 1x, {full} 2x">'
            f'<img src="{thumb}" alt="{alt}"></picture>'
        )
    return f"<figure>{body}<figcaption>{html.escape(alt)}</figcaption></figure>"


@dataclass(frozen=True)
class Gallery:
    """A generated gallery on disk: where it is and the first page of each class."""

    site_dir: Path
    first_pages: dict[str, str]  # label -> path of page 1, relative to the site root
    pages_per_class: int
    pictures_per_class: int


def build_gallery(site_dir: Path, per_class: int, per_page: int = 24, seed: int = 0) -> Gallery:
    """Generate the pictures and write a small static gallery site around them.

    Each class gets `ceil(per_class / per_page)` pages chained by rel="next" links; every page
    has one broken link (a thumbnail and full picture that do not exist).
    """
    pictures = generate_pictures(site_dir / "_originals", per_class, seed)
    (site_dir / "static").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (1, 1), (200, 200, 200)).save(site_dir / "static" / "spacer.gif")
    (site_dir / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    first_pages, pages = {}, 0
    for label, paths in pictures.items():
        (site_dir / label / "full").mkdir(parents=True, exist_ok=True)
        (site_dir / label / "thumb").mkdir(parents=True, exist_ok=True)
        for path in paths:
            path.replace(site_dir / label / "full" / path.name)
            # A picture generate_pictures just drew: not through the image gate (storage/images).
            with Image.open(site_dir / label / "full" / path.name) as full:
                full.resize(THUMB_SIZE).save(site_dir / label / "thumb" / path.name, quality=85)
        pages = _write_pages(site_dir / label, label, [p.name for p in paths], per_page)
        first_pages[label] = f"{label}/page-1.html"
    shutil.rmtree(site_dir / "_originals")
    links = "".join(f'<li><a href="{p}">{lbl}</a></li>' for lbl, p in first_pages.items())
    (site_dir / "index.html").write_text(f"<!doctype html><title>Demo</title><ul>{links}</ul>")
    return Gallery(site_dir, first_pages, pages, per_class)


def _write_pages(folder: Path, label: str, names: list[str], per_page: int) -> int:
    chunks = [names[i : i + per_page] for i in range(0, len(names), per_page)] or [[]]
    for number, chunk in enumerate(chunks, start=1):
        figures = [_figure(i % 4, name, f"{label} {name}") for i, name in enumerate(chunk)]
        missing = f"missing-{number}.jpg"  # the broken link every page has
        figures.append(f'<a href="full/{missing}"><img src="thumb/{missing}" alt="gone"></a>')
        last = number == len(chunks)
        nxt = f"page-{number + 1}.html"
        page = _PAGE.format(
            title=f"{label.title()} gallery, page {number}",
            og_image=f"full/{chunk[0]}" if chunk else "",
            next_link="" if last else f'\n<link rel="next" href="{nxt}">',
            figures="\n".join(figures),
            next_anchor="" if last else f' · <a rel="next" href="{nxt}">Next page</a>',
        )
        (folder / f"page-{number}.html").write_text(page)
    return len(chunks)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # keep the demo's terminal readable
        pass


class GalleryServer:
    """Serve a folder on 127.0.0.1 (a free port) from a background thread; a context manager."""

    def __init__(self, site_dir: Path, port: int = 0) -> None:
        handler = functools.partial(_QuietHandler, directory=str(site_dir))
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> GalleryServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
