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

    .venv/bin/python bench/bench_hostile.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.scrape.extract import parse_page  # noqa: E402
from tasks.scrape.fetch import Fetcher, ScrapeSettings  # noqa: E402
from tests.http_server import SiteServer  # noqa: E402

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
    width = max(len(r[0]) for r in rows)
    for attack, now, baseline in rows:
        print(f"{attack:<{width}}  {now:<45} {baseline}")


if __name__ == "__main__":
    main()
