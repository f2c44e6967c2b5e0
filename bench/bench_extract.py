"""Benchmark the page extractor (tasks.scrape.extract.extract_candidates) against the one before
issue 20 (bench/baseline_extract.py, bs4), on the same generated pages of about 1.7 MB.

    .venv/bin/python bench/bench_extract.py [--size 1700000] [--repeat 5]

Two pages: "gallery" (cards of <img srcset> in links, text, an inline <script> now and then: what
both extractors read) and "every form" (the same cards plus og/twitter meta, JSON-LD, <style>
backgrounds, <amp-img>, <video poster>, SVG <image>, lazy attributes, <noscript> fallbacks and
style attributes). Prints one table: best of `repeat` interleaved runs each, the ratio to
the baseline, and how many URLs each found. No network; nothing is written.
"""

from __future__ import annotations

import argparse
import gc
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.baseline_extract import extract_candidates as before  # noqa: E402
from tasks.scrape.extract import extract_candidates as now  # noqa: E402

PAGE_URL = "https://example.com/gallery/index.html"
HEAD = """<!doctype html><html><head><title>bench</title>
<meta property="og:image" content="/og.jpg"><meta name="twitter:image" content="/tw.jpg">
<link rel="image_src" href="/main.jpg"><base href="https://cdn.example.com/g/">
<script type="application/ld+json">{"@graph": [{"@type": "Article", "image": ["a.jpg",
 {"@type": "ImageObject", "url": "b.jpg"}], "thumbnailUrl": "t.jpg"}]}</script>
<style>.hero{background-image:image-set(url(h1.jpg) 1x, url(h2.jpg) 2x)} p{color:#333}</style>
</head><body>"""


def card(i: int) -> str:
    return (
        f"<div class='card c{i}'><a href='/p/{i}.html'><img src='/t/{i}.jpg' "
        f"srcset='/t/{i}.jpg 1x, /t/{i}@2x.jpg 2x' alt='picture {i}'></a>"
        f"<p>Lorem ipsum dolor sit amet {i}, consectetur <b>adipiscing</b> elit, sed do "
        f"eiusmod tempor incididunt.</p></div>\n"
    )


def rich(i: int) -> str:
    """One of each form the new extractor reads, cycling."""
    forms = [
        f"<amp-img src='/amp/{i}.jpg' width=4 height=3></amp-img>",
        f"<video poster='/poster/{i}.jpg'><source src='/v/{i}.mp4'></video>",
        f"<svg width=4 height=3><image href='/svg/{i}.png'/></svg>",
        f"<img src='/p.gif' data-src='/lazy/{i}.jpg' class='lazyload'>"
        f"<noscript><img src='/lazy/{i}.jpg'></noscript>",
        f"<div class='bg' style='background: #000 url(\"/style/{i}.jpg\") no-repeat'></div>",
        f"<div data-bg='/bg/{i}.jpg'></div>",
        f"<img data-lazy-srcset='/l/{i}.jpg 1x, /l/{i}@2x.jpg 2x' src='/p.gif'>",
    ]
    return forms[i % len(forms)]


def page(size: int, every_form: bool) -> str:
    parts, total, i = [HEAD], len(HEAD), 0
    while total < size:
        i += 1
        chunk = card(i) + (rich(i) if every_form else "")
        if i % 50 == 0:
            chunk += "<script>var x = '<img src=\"no.jpg\">'; function f(){return 1}</script>\n"
        parts.append(chunk)
        total += len(chunk)
    return "".join(parts) + "</body></html>"


def best_of(html: bytes, repeat: int) -> dict[str, tuple[float, int]]:
    """Best time and URL count per extractor, runs interleaved (before, now, before, ...) so
    that load from other jobs on a shared machine falls on both alike."""
    times: dict[str, list[float]] = {"before": [], "now": []}
    found: dict[str, int] = {}
    for _ in range(repeat):
        for name, fn in (("before", before), ("now", now)):
            gc.collect()  # the other extractor's garbage (bs4 trees are cycles) is not ours
            start = time.perf_counter()
            found[name] = len(fn(html, PAGE_URL))
            times[name].append(time.perf_counter() - start)
    return {name: (min(t), found[name]) for name, t in times.items()}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        names = (line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line)
        return next(names)
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_700_000, help="page size in bytes")
    parser.add_argument("--repeat", type=int, default=5, help="runs per extractor; best counts")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; Python {platform.python_version()}")
    print(f"{'page':<12} {'MB':>5} {'extractor':<18} {'best s':>7} {'ratio':>7} {'URLs':>6}")
    for name, every in (("gallery", False), ("every form", True)):
        html = page(args.size, every).encode()
        best = best_of(html, args.repeat)
        (base_s, base_n), (new_s, new_n) = best["before"], best["now"]
        mb, ratio = len(html) / 1e6, base_s / new_s
        print(f"{name:<12} {mb:>5.2f} {'before (bs4)':<18} {base_s:>7.3f} {1.0:>6.2f}x {base_n:>6}")
        print(f"{'':<12} {'':>5} {'now (lxml walk)':<18} {new_s:>7.3f} {ratio:>6.2f}x {new_n:>6}")


if __name__ == "__main__":
    main()
