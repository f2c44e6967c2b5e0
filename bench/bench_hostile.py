"""Benchmark: hostile servers and settings (issue 14) against the scraper, on loopback only.

Each row is one attack, rerunnable, with what it costs now and what the same attack costs
with the defence turned off where that can be done in the same run (the baseline):

- a body sent in 50 one-byte pieces 0.5 s apart, and headers sent byte by byte 0.1 s apart,
  with timeout=2 (deadline: the default 4 x timeout = 8 s);
- 16 PNGs of 9400x9400 pixels (23 KB each) at concurrency=16: peak RSS of a fresh process
  with the 50 MP budget vs with the budget lifted (Pillow's own 89 MP limit only);
- a 1.7 MB page with ~87k image URLs: CPU of one parse with the 5,000 cap vs two parses
  (images, then next-page links, as before);
- HTTP_PROXY pointing at a loopback "proxy": requests it sees by default vs trust_env=True.

Decode budgets (issue 23, storage/images.py), each in a fresh process, before = Pillow as the
stages used it (Image.open, then load), after = through the image gate (scrape's check):

- a progressive JPEG of 4000x4000 whose last scan (31 bytes) is repeated 800 times: CPU;
- an ICO whose directory says 256x256 but embeds a 12000x12000 RGBA PNG: peak RSS;
- an animated WebP (2 frames of 16x16) on a 13000x13000 canvas: peak RSS and address space;
- and, for scale, a 7000x7000 JPEG at the scan cap (100 scans): what the gate still lets in.

    .venv/bin/python bench/bench_hostile.py            (--small: the decode rows at 1/4 size)
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.scrape.extract import parse_page  # noqa: E402
from tasks.scrape.fetch import FetchConfig, Fetcher  # noqa: E402
from tests.http_server import SiteServer  # noqa: E402
from tests.image_attacks import hostile_jpeg, ico, lying_webp  # noqa: E402

RSS = """
import json, resource, sys, tempfile
from collections import Counter
from tasks.scrape.fetch import FetchConfig
from tasks.scrape.tasks import download_images
from tests.http_server import SiteServer, bilevel_png
files = {f"huge/{i}.png": bilevel_png(9400, 9400) for i in range(16)}
with SiteServer(root=None, files=files) as site, tempfile.TemporaryDirectory() as raw:
    c = [{"url": site.url(p), "page_url": "p", "found_in": "img[src]"} for p in files]
    cfg = FetchConfig(concurrency=16, per_host=16, allow_private_networks=True,
                      max_pixels=int(sys.argv[1]))
    rows = download_images.fn(c, "r", "t", raw, cfg)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "statuses": Counter(r["status"] for r in rows)}))
"""


def trickle(part: str, trickle_s: float, size: int) -> tuple[float, str]:
    cfg = FetchConfig(timeout=2, retries=0, respect_robots=False, allow_private_networks=True)
    with SiteServer(root=None, files={"t.bin": b"x" * size}, trickle={"t.bin": part},
                    trickle_s=trickle_s) as site, Fetcher(cfg) as fetcher:  # fmt: skip
        got = fetcher.get(site.url("t.bin"))
    return got.elapsed_s, got.status or "ok"


def rss(max_pixels: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", RSS, str(max_pixels)], capture_output=True,
                         text=True, env=env, cwd=ROOT, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_cpu() -> tuple[float, float, int]:
    html = ('<a rel="next" href="p2.html">n</a>' + "".join(
        f'<img src="/i/{i}.jpg">' for i in range(87_000)
    )).encode()  # fmt: skip
    start = time.process_time()
    parse_page(html, "http://site.invalid/p1.html")  # before: images ...
    parse_page(html, "http://site.invalid/p1.html")  # ... then next-page links
    two = time.process_time() - start
    start = time.process_time()
    parse_page(html, "http://site.invalid/p1.html", max_candidates=5000)
    return two, time.process_time() - start, len(html)


def proxy_hits(trust_env: bool) -> int:
    with SiteServer(root=None, files={}) as proxy:
        os.environ.update(HTTP_PROXY=proxy.base, HTTPS_PROXY=proxy.base)
        for name in ("NO_PROXY", "no_proxy"):
            os.environ.pop(name, None)
        cfg = FetchConfig(timeout=2, retries=0, respect_robots=False, trust_env=trust_env,
                          allow_private_networks=True)  # fmt: skip
        with Fetcher(cfg) as fetcher:
            fetcher.get("http://internal.invalid/secret.jpg")
        return len(proxy.stats.hits)


def main() -> None:
    rows = []
    for part, step, size in (("body", 0.5, 50), ("headers", 0.1, 460)):
        seconds, status = trickle(part, step, size)
        whole = step * (size if part == "body" else 460)
        rows.append((f"{part} trickled, {step} s/byte", f"{seconds:.1f} s -> {status}",
                     f"server alone: {whole:.0f} s"))  # fmt: skip
    on, off = rss(50_000_000), rss(1_000_000_000)
    rows.append(
        (
            "16 x 9400x9400 PNG, concurrency 16",
            f"{on['rss_mb']:.0f} MB RSS, {dict(on['statuses'])}",
            f"no budget: {off['rss_mb']:.0f} MB ({off['rss_mb'] / on['rss_mb']:.1f}x)",
        )
    )
    two, one, size = parse_cpu()
    rows.append(
        (
            f"{size / 1e6:.1f} MB page, 87k image URLs",
            f"{one:.2f} s CPU, one parse",
            f"two parses: {two:.2f} s ({two / one:.1f}x)",
        )
    )
    rows.append(("HTTP_PROXY -> loopback proxy", f"{proxy_hits(False)} request(s) at the proxy",
                 f"trust_env=True: {proxy_hits(True)}"))  # fmt: skip
    rows += decode_budget_rows(small="--small" in sys.argv)
    width = max(len(r[0]) for r in rows)
    for attack, now, baseline in rows:
        print(f"{attack:<{width}}  {now:<45} {baseline}")


# --- decode budgets (issue 23): the image gate vs Pillow as used before -------------------------

DECODE = """
import io, json, sys, time
from PIL import Image
from storage.images import open_image
data, how = open(sys.argv[1], "rb").read(), sys.argv[2]
start = time.process_time()
try:  # before: as every stage opened images; after: the gate, as prepare, predict, curate do
    with (Image.open(io.BytesIO(data)) if how == "before" else open_image(data)) as image:
        image.load()
    outcome = "decoded"
except Exception as e:
    outcome = type(e).__name__
cpu = time.process_time() - start
status = open("/proc/self/status").read()
mb = lambda field: int(status.split(field + ":")[1].split()[0]) / 1024
print(json.dumps({"cpu_s": cpu, "rss_mb": mb("VmHWM"), "vm_mb": mb("VmPeak"), "outcome": outcome}))
"""


def rgba_png(side: int) -> bytes:
    """A valid side x side RGBA PNG of zeros, built row by row (12000: 560 KB, 576 MB decoded)."""
    packer, row = zlib.compressobj(9), b"\x00" + bytes(4 * side)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def decode_attack(path: Path, how: str) -> dict:
    """Open and load one file in a fresh process (its own peak memory), `before` or `after`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", DECODE, str(path), how],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def decode_budget_rows(small: bool = False) -> list[tuple[str, str, str]]:
    """One row per decode attack: the gate's cost and outcome, then Pillow's as used before."""
    k = 4 if small else 1
    attacks = {
        f"progressive JPEG {4000 // k}^2, 810 scans": lambda: hostile_jpeg((4000 // k,) * 2, 800),
        f"ICO says 256^2, embeds {12000 // k}^2 RGBA PNG": lambda: ico(
            [((256, 256), rgba_png(12000 // k))]
        ),
        f"animated WebP, {13000 // k}^2 canvas": lambda: lying_webp((13000 // k,) * 2),
        # Not an attack: the most a JPEG may cost within both budgets (50 MP, 100 scans).
        f"JPEG at the caps: {7000 // k}^2, 100 scans": lambda: hostile_jpeg((7000 // k,) * 2, 90),
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, make in attacks.items():
            path = Path(folder, "attack")
            path.write_bytes(make())
            after, before = decode_attack(path, "after"), decode_attack(path, "before")
            rows.append(
                (
                    f"{name} ({path.stat().st_size / 1000:.0f} KB)",
                    f"{after['cpu_s']:.3f} s CPU, {after['rss_mb']:.0f} MB RSS, {after['outcome']}",
                    f"before: {before['cpu_s']:.2f} s, {before['rss_mb']:.0f} MB RSS, "
                    f"{before['vm_mb']:.0f} MB VM, {before['outcome']}",
                )
            )
    return rows


if __name__ == "__main__":
    main()
