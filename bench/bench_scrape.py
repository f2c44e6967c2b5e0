"""Benchmark: scrape_images vs a plain sequential requests.get loop, same loopback site.

A server on 127.0.0.1 (in a child process, as a real site would be elsewhere) adds
`--latency` (50 ms) to every response and serves one page linking `--images` (300) real
JPEGs: the ImageNet samples from ../shared/data when present (plus mirrored copies to
reach the count), else generated pictures. One row per setting: wall seconds, speed-up
over the sequential loop, and the most requests the server saw in flight at once (where
a per-host limit is measured: at the server).

    .venv/bin/python bench/bench_scrape.py [--images 300] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from PIL import Image, ImageOps

from tests.http_server import SiteServer

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples-200.tar.gz"


def jpegs(count: int, scratch: Path) -> tuple[dict[str, bytes], str]:
    """`count` distinct JPEGs by site path, and where they came from."""
    if SAMPLES.is_file():
        with tarfile.open(SAMPLES) as tar:
            tar.extractall(scratch, filter="data")
        originals = sorted((scratch / "imagenet-samples").glob("*.JPEG"))
        files = {f"img/{p.stem}.jpg": p.read_bytes() for p in originals[:count]}
        for p in originals[: count - len(files)]:  # mirrored copies: new bytes, same kind
            out = io.BytesIO()
            ImageOps.mirror(Image.open(p).convert("RGB")).save(out, "JPEG", quality=90)
            files[f"img/{p.stem}-mirror.jpg"] = out.getvalue()
        return files, f"ImageNet samples ({SAMPLES.name})"
    from tasks.demo.gallery import generate_pictures

    made = generate_pictures(scratch / "made", (count + 1) // 2)
    paths = sorted(p for group in made.values() for p in group)[:count]
    return {f"img/{p.name}": p.read_bytes() for p in paths}, "generated pictures"


class RemoteSite:
    """SiteServer in a child process, so its CPU time is not taken from the client's GIL;
    the parent asks it for its stats over a pipe."""

    def __init__(self, files: dict[str, bytes], latency: float) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, files, latency), daemon=True)
        self._proc.start()
        self.base = self._conn.recv()

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def ask(self, command: str) -> int | None:
        self._conn.send(command)
        return self._conn.recv()

    def close(self) -> None:
        self.ask("stop")
        self._proc.join(timeout=10)


def _serve(conn, files: dict[str, bytes], latency: float) -> None:
    with SiteServer(root=None, files=files, latency=latency) as site:
        conn.send(site.base)
        while (command := conn.recv()) != "stop":
            if command == "reset":
                site.reset_stats()
            conn.send(site.stats.max_in_flight if command == "peak" else None)
    conn.send(None)


def sequential(urls: list[str]) -> tuple[float, int, int]:
    start = time.perf_counter()
    ok = sum(requests.get(u, timeout=30).status_code == 200 for u in urls)
    return time.perf_counter() - start, ok, 1


def flow_run(site: RemoteSite, scratch: Path, conc: int, per_host: int, page: str):
    from flows.scrape_images import scrape_images

    site.ask("reset")
    start = time.perf_counter()
    result = scrape_images(
        params={
            "pages": [site.url(page)],
            "label": "bench",
            "data_dir": str(scratch / f"flow-{time.time_ns()}"),
            "concurrency": conc,
            "per_host": per_host,
            "allow_private_networks": True,
        }
    )
    return time.perf_counter() - start, result.counts.get("ok", 0), site.ask("peak")


def task_run(site: RemoteSite, urls: list[str], scratch: Path, conc: int):
    """The download task alone (.fn(), no Prefect run): the flow minus its fixed costs."""
    from tasks.scrape.fetch import ScrapeSettings
    from tasks.scrape.tasks import download_images

    site.ask("reset")
    cfg = ScrapeSettings(concurrency=conc, per_host=conc, allow_private_networks=True)
    candidates = [{"url": u, "page_url": "bench", "found_in": "img[src]"} for u in urls]
    start = time.perf_counter()
    rows = download_images.fn(
        candidates, "bench", "bench", str(scratch / f"t-{time.time_ns()}"), cfg
    )
    ok = sum(r["status"] == "ok" for r in rows)
    return time.perf_counter() - start, ok, site.ask("peak")


def best(repeat: int, run, *args) -> tuple[float, int, int]:
    """The fastest of `repeat` runs: the CPU is shared, slower runs measure the neighbours."""
    return min((run(*args) for _ in range(repeat)), key=lambda r: r[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--repeat", type=int, default=2, help="runs per setting; the best counts")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        scratch = Path(tmp)
        files, source = jpegs(args.images, scratch)
        page = "".join(f'<img src="/{name}">' for name in files).encode()
        files["index.html"] = b"<!doctype html><title>bench</title>" + page
        files["empty.html"] = b"<!doctype html><title>nothing here</title>"
        mb = sum(len(v) for v in files.values()) / 1e6
        print(f"{args.images} JPEGs from {source}, {mb:.1f} MB; +{args.latency * 1000:.0f} ms")
        site = RemoteSite(files, args.latency)
        try:
            urls = [site.url(name) for name in files if name.startswith("img/")]
            t0 = time.perf_counter()
            flow_run(site, scratch, 1, 1, "empty.html")  # starts Prefect's ephemeral server
            startup = time.perf_counter() - t0
            print(f"first flow run (starts Prefect's ephemeral server): {startup:.1f} s")
            fixed = best(args.repeat, flow_run, site, scratch, 1, 1, "empty.html")[0]
            print(f"flow run on a page without images (fixed cost): {fixed:.2f} s")
            base = sequential(urls)
            rows = [("sequential requests.get", 1, 1, *base, None)]
            for conc in args.concurrency:
                got = best(args.repeat, task_run, site, urls, scratch, conc)
                rows.append(("download task (.fn)", conc, conc, *got, 0.7 * conc))
            for conc, host in [(c, c) for c in args.concurrency] + [(16, 2), (16, 1)]:
                got = best(
                    1 if host < conc else args.repeat,
                    flow_run,
                    site,
                    scratch,
                    conc,
                    host,
                    "index.html",
                )
                rows.append(
                    ("scrape_images flow", conc, host, *got, 0.7 * conc if host == conc else None)
                )
        finally:
            site.close()
    header = ("mode", "conc", "host", "seconds", "ok", "speed-up", "target", "peak")
    print("\n{:<24} {:>4} {:>4} {:>8} {:>4} {:>8} {:>6} {:>5}".format(*header))
    for mode, conc, host, secs, ok, peak, target in rows:
        cells = (mode, conc, host, f"{secs:.2f}", ok, f"{base[0] / secs:.1f}x")
        cells += (f"{target:.1f}x" if target else "-", peak)
        print("{:<24} {:>4} {:>4} {:>8} {:>4} {:>8} {:>6} {:>5}".format(*cells))


if __name__ == "__main__":
    main()
