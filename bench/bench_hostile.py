"""Benchmark: hostile servers and settings (issue 14) against the scraper, on loopback only.

Each row is one attack, rerunnable, with what it costs now and what the same attack costs
with the defence turned off where that can be done in the same run (the baseline):

- a body sent in 50 one-byte pieces 0.5 s apart, and headers sent byte by byte 0.1 s apart,
  with timeout=2 (deadline: the default 4 x timeout = 8 s);
- 16 PNGs of 9400x9400 pixels (23 KB each) at concurrency=16: peak RSS of a fresh process
  with the 50 MP budget vs with the budget lifted (Pillow's own 89 MP limit only);
- a 1.7 MB page with ~87k image URLs: CPU of one parse with the 5,000 cap vs two parses
  (images, then next-page links, as before);
- HTTP_PROXY pointing at a loopback "proxy": requests it sees by default vs trust_env=True;
- parsers of untrusted text (issue 23; `parser_rows`): the CSS, page, JSON-LD and robots.txt
  attacks measured on main, against frozen copies of the scanners before
  (bench/baseline_css.py, bench/baseline_parse_page.py) and protego's own can_fetch.

Decode budgets (issue 23, storage/images.py), each in a fresh process, before = Pillow as the
stages used it (Image.open, then load), after = through the image gate (scrape's check):

- a progressive JPEG of 4000x4000 whose last scan (31 bytes) is repeated 800 times: CPU;
- an ICO whose directory says 256x256 but embeds a 12000x12000 RGBA PNG: peak RSS;
- an animated WebP (2 frames of 16x16) on a 13000x13000 canvas: peak RSS and address space;
- and, for scale, a 7000x7000 JPEG at the scan cap (100 scans): what the gate still lets in.

    .venv/bin/python bench/bench_hostile.py [--parsers-only] [--scale 1.0] [--small]

`--scale` multiplies the parser attacks' sizes (0.1 for a quick run: the quadratic baselines
then take 1/100 of their time); `--small` runs the decode rows at 1/4 size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

from protego import Protego  # noqa: E402

from bench import baseline_parse_page  # noqa: E402
from tasks.scrape.extract import parse_page  # noqa: E402
from tasks.scrape.fetch import Fetcher, ScrapeSettings  # noqa: E402
from tasks.scrape.robots import rules_from  # noqa: E402
from tasks.scrape.tasks import find_image_urls  # noqa: E402
from tests.http_server import SiteServer  # noqa: E402
from tests.image_attacks import hostile_jpeg, ico, lying_webp  # noqa: E402

RSS = """
import json, resource, sys, tempfile
from collections import Counter
from tasks.scrape.fetch import ScrapeSettings
from tasks.scrape.tasks import download_images
from tests.http_server import SiteServer, bilevel_png
files = {f"huge/{i}.png": bilevel_png(9400, 9400) for i in range(16)}
with SiteServer(root=None, files=files) as site, tempfile.TemporaryDirectory() as raw:
    c = [{"url": site.url(p), "page_url": "p", "found_in": "img[src]"} for p in files]
    cfg = ScrapeSettings(concurrency=16, per_host=16, allow_private_networks=True,
                      max_pixels=int(sys.argv[1]))
    rows = download_images.fn(c, "r", "t", raw, cfg)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "statuses": Counter(r["status"] for r in rows)}))
"""


def trickle(part: str, trickle_s: float, size: int) -> tuple[float, str]:
    cfg = ScrapeSettings(timeout=2, retries=0, respect_robots=False, allow_private_networks=True)
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
        cfg = ScrapeSettings(timeout=2, retries=0, respect_robots=False, trust_env=trust_env,
                          allow_private_networks=True)  # fmt: skip
        with Fetcher(cfg) as fetcher:
            fetcher.get("http://internal.invalid/secret.jpg")
        return len(proxy.stats.hits)


# --- parsers of untrusted text (issue 23) ---------------------------------------------------------

PAGE_URL = "http://site.invalid/p1.html"
PEAK = """
import json, sys, time
def hwm_mb():  # this process's peak RSS (ru_maxrss would start at the parent's, fork+exec)
    line = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
which, path = sys.argv[1], sys.argv[2]
if which == "before":
    from bench.baseline_parse_page import parse_page
else:
    from tasks.scrape.extract import parse_page
page = open(path, "rb").read()
base = hwm_mb()
start = time.process_time()
got = parse_page(page, "http://site.invalid/p1.html", 5000)
print(json.dumps({"cpu_s": time.process_time() - start, "found": len(got.candidates),
                  "peak_mb": hwm_mb() - base, "base_mb": base}))
"""


def big_page(kind: str, size: int) -> bytes:
    """A page of `<img>` tags, or one JSON-LD array of ImageObjects, of about `size` bytes."""
    unit = '<img src="/i/{}.jpg">' if kind == "img" else '{{"image": "/i/{}.jpg"}}, '
    n = size // (len(unit) + 3)
    body = "".join(unit.format(i) for i in range(n))
    if kind == "img":
        return body.encode()
    return f'<script type="application/ld+json">[{body[:-2]}]</script>'.encode()


def parse_in_fresh_process(which: str, page: bytes) -> dict:
    """CPU and the peak RSS a parse adds, in a fresh process that only read the page."""
    with tempfile.NamedTemporaryFile(suffix=".html") as f:
        f.write(page)
        f.flush()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", PEAK, which, f.name], capture_output=True,
                             text=True, env=env, cwd=ROOT, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_of(parse, html: str) -> float:
    start = time.process_time()
    parse(html, PAGE_URL)
    return time.process_time() - start


def css_rows(scale: float) -> list[tuple[str, str, str]]:
    """The CSS attacks, through each extractor's whole page parse."""
    rows = []
    for name, html in (
        ("<style>url( + 40,000 '/* '", "<style>url(" + "/* " * int(40_000 * scale)),
        ('image-set("a" 1...) 16,000 digits',
         '<div style=\'background:image-set("a" ' + "1" * int(16_000 * scale) + ")'></div>"),
        ("url( + 32,000 spaces", "<style>a{background:url(" + " " * int(32_000 * scale)),
    ):  # fmt: skip
        now, before = cpu_of(parse_page, html), cpu_of(baseline_parse_page.parse_page, html)
        rows.append((f"CSS {name} x{scale:g}", f"{now:.3f} s CPU", f"before: {before:.2f} s"))
    return rows


def page_rows(scale: float) -> list[tuple[str, str, str]]:
    rows = []
    for kind, size in (("img", 19_000_000), ("jsonld", 8_800_000)):
        page = big_page(kind, int(size * scale))
        now, before = (parse_in_fresh_process(w, page) for w in ("now", "before"))
        label = "<img> tags" if kind == "img" else "JSON-LD array"
        rows.append((
            f"{len(page) / 1e6:.1f} MB page of {label}, cap 5000",
            f"{now['cpu_s']:.2f} s CPU, +{now['peak_mb']:.0f} MB peak RSS, {now['found']} URLs",
            f"before: {before['cpu_s']:.2f} s, +{before['peak_mb']:.0f} MB",
        ))  # fmt: skip
    return rows


def deadline_row(scale: float) -> tuple[str, str, str]:
    """A page that takes long to parse whole (cap lifted) with deadline=2: a `timeout` row."""
    page = big_page("img", int(19_000_000 * scale))
    cfg = ScrapeSettings(deadline=2, retries=0, respect_robots=False, allow_private_networks=True,
                      max_bytes=len(page) + 1)  # fmt: skip
    with SiteServer(root=None, files={"p.html": page}) as site:
        start = time.monotonic()
        got = find_image_urls.fn([site.url("p.html")], "r", "t", cfg, max_candidates=10**6)
        seconds = time.monotonic() - start
    status = got["rows"][0]["status"] if got["rows"] else "ok"
    before = cpu_of(lambda h, u: baseline_parse_page.parse_page(h, u, 10**6), page)
    return (
        f"{len(page) / 1e6:.1f} MB page, deadline 2 s, cap 10^6",
        f"{seconds:.1f} s -> {status}, {len(got['candidates'])} URLs kept",
        f"before: the parse alone {before:.1f} s CPU",
    )


def hostile_robots(rules: int = 25_000) -> str:
    rng = random.Random(0)
    lines = ["User-agent: *"] + [
        f"Disallow: /*{rng.randrange(10**4)}*{rng.randrange(100)}$" for _ in range(rules)
    ]
    return "\n".join(lines)[: 512 * 1024]


def robots_row() -> tuple[str, str, str]:
    text = hostile_robots()
    urls = [f"http://h.example/img/{i}/p{i * 7919}.jpg" for i in range(400)]
    theirs, ours = Protego.parse(text), rules_from(text.encode(), 200, None)
    start = time.process_time()
    ours.allows(urls[0], "pixelpipe")  # builds the matcher once per origin and agent
    build = time.process_time() - start
    start = time.process_time()
    for url in urls:
        ours.allows(url, "pixelpipe")
    now = (time.process_time() - start) / len(urls) * 1000
    start = time.process_time()
    for url in urls[:20]:
        theirs.can_fetch(url, "pixelpipe")
    before = (time.process_time() - start) / 20 * 1000
    return (
        f"robots.txt {len(text) // 1024} KiB, {text.count(chr(10))} wildcard rules",
        f"{now:.3f} ms per URL (+{build * 1000:.0f} ms once)",
        f"protego can_fetch: {before:.0f} ms per URL",
    )


def parser_rows(scale: float) -> list[tuple[str, str, str]]:
    return [*css_rows(scale), *page_rows(scale), deadline_row(scale), robots_row()]


def network_rows() -> list[tuple[str, str, str]]:
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
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parsers-only", action="store_true", help="only the issue 23 parsers")
    parser.add_argument("--scale", type=float, default=1.0, help="parser attack size factor")
    parser.add_argument("--small", action="store_true", help="the decode rows at 1/4 size")
    args = parser.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    print(next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), ""),
          "| load average", Path("/proc/loadavg").read_text().split()[:3])  # fmt: skip
    rows = [] if args.parsers_only else network_rows() + decode_budget_rows(small=args.small)
    rows += parser_rows(args.scale)
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
