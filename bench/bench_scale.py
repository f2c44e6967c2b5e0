"""Scale proof: a URL list of N generated images -> scrape -> prepare -> predict, as flows.

    .venv/bin/python bench/bench_scale.py [--sizes 20000 100000] [--runners default dask]
        [--stages scrape prepare predict] [--work DIR]

A child process serves the images on loopback, synthesizing each from its URL path (8x8
random blocks seeded by the image's number, PNG or JPEG in turn, 40x40 px): nothing large sits
on disk. The URL list is a CSV with three labels. Each (size, runner) runs in a fresh
subprocess (its own data root; the Prefect server is shared and outside it) that runs the
three flows one after another and reports its own peak RSS (VmHWM), the seconds of each flow
and the rows written. `default`: each stage's own runner (scrape threads, prepare processes,
predict threads); `dask`: runner=dask on a LocalCluster of 2 single-threaded workers started
before timing. Predict uses a 2-conv Keras model with random weights (tiny_model).

Checks, printed as PASS/FAIL:
  rows    one manifest row per URL, one dataset row per stored image, one prediction per
          prepared image, and the same rows (content digests) under both runners;
  memory  the flow process's peak RSS grows by < 1 KB per image from the smallest size to
          the largest;
  time    the largest size takes at most 5.5x (largest/smallest)/5 times the smallest's time.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
WORK = Path(tempfile.gettempdir()) / "pixelpipe-bench-scale"
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LABELS = ("a", "b", "c")
SOURCE_PX, SIZE = 40, 32  # served images, prepared side
STAGES = ("scrape", "prepare", "predict")
RSS_LIMIT_PER_IMAGE = 1024  # bytes of peak RSS per extra image
TIME_RATIO_AT_5X = 5.5  # 100,000 images may take 5.5x the time of 20,000


# --- the images, synthesized per URL in a child process -------------------------------------------


def image_bytes(number: int) -> bytes:
    """Image `number`: 8x8 random RGB blocks (so perceptual hashes differ) scaled to 40 px."""
    from PIL import Image

    blocks = Image.frombytes("RGB", (8, 8), random.Random(number).randbytes(192))
    out = io.BytesIO()
    fmt = "PNG" if number % 2 else "JPEG"
    blocks.resize((SOURCE_PX, SOURCE_PX), Image.Resampling.NEAREST).save(out, fmt)
    return out.getvalue()


def _serve(ready, stop) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the scraper's pool reuses connections

        def do_GET(self) -> None:
            name = self.path.rpartition("/")[2].partition(".")[0]
            if self.path.startswith("/img/") and name.isdigit():
                number = int(name)
                ctype = "image/png" if number % 2 else "image/jpeg"
                body, code = image_bytes(number), 200
            else:
                body, ctype, code = b"not here", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ready.send(f"http://127.0.0.1:{server.server_address[1]}")
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.shutdown()


def write_url_list(base: str, size: int, path: Path) -> None:
    with path.open("w") as out:
        out.write("url,label\n")
        for i in range(size):
            ext = "png" if i % 2 else "jpg"
            out.write(f"{base}/img/{i}.{ext},{LABELS[i % len(LABELS)]}\n")


# --- one (size, runner) in a fresh process ------------------------------------------------------


def peak_rss() -> int:
    """This process's own peak resident set (VmHWM), bytes; ru_maxrss would carry the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(size: int, runner: str, url_list: str, model: str, stages: list[str]) -> dict:
    from flows.predict_batch import predict_batch
    from flows.prepare_dataset import prepare_dataset
    from flows.scrape_images import scrape_images

    data = WORK / f"{runner}-{size}"
    if "scrape" in stages:  # a later stage alone reuses what the last run left
        shutil.rmtree(data, ignore_errors=True)
    common = {"data_dir": str(data), "run_id": "scale"}
    extra, cluster = dask_cluster() if runner == "dask" else ({}, None)
    scrape = {"url_list": url_list, "allow_private_networks": True, "concurrency": 16,
              "per_host": 16, "shard_size": 1000}  # fmt: skip
    predict = {"inputs": [str(data / "datasets" / "default")], "model": model, "top_k": 1,
               "batch_size": 256, "shard_size": 2000}  # fmt: skip
    calls = {
        "scrape": lambda: scrape_images(params=common | scrape | extra).stored,
        "prepare": lambda: prepare_dataset(params=common | {"image_size": SIZE} | extra).rendered,
        "predict": lambda: predict_batch(params=common | predict | extra).ok,
    }
    seconds, peaks, done = {}, {"start": peak_rss()}, {}  # VmHWM after each stage
    for stage in stages:
        start = time.perf_counter()
        done[stage] = calls[stage]()
        seconds[stage], peaks[stage] = time.perf_counter() - start, peak_rss()
    if cluster is not None:
        cluster.close()
    return {
        "size": size, "runner": runner, "seconds": seconds, "peak_rss": peak_rss(),
        "peaks": peaks, "done": done, **rows_of(data),
    }  # fmt: skip


def dask_cluster() -> tuple[dict, object]:
    """A LocalCluster of 2 single-threaded workers, TensorFlow imported in each before timing."""
    import dask
    from distributed import Client, LocalCluster

    from flows.gate.dask_runner import NO_MESSAGE_LOGS

    env = {"PREFECT_API_URL": os.environ["PREFECT_API_URL"]}
    # Configured as the LocalCluster runner=dask starts: its scheduler lives in this process.
    with dask.config.set(NO_MESSAGE_LOGS):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, env=env)
    with Client(cluster) as client:
        client.run(lambda: __import__("tasks.predict.tasks") and None)
    return {"runner": "dask", "dask_address": cluster.scheduler_address}, cluster


def rows_of(data: Path) -> dict:
    """Row counts of each table and a digest of their content that does not depend on paths."""
    from storage.parquet import read_table

    manifest = read_table("scrape_manifest", data_dir=data, run_id="scale")
    dataset = read_table("dataset_manifest", data_dir=data, run_id="scale")
    predictions = read_table("predictions", data_dir=data, run_id="scale")
    images = predictions["image"].map(lambda p: p.rsplit("/", 3)[-3:]).map("/".join)
    return {
        "manifest_rows": len(manifest),
        "manifest_ok": int((manifest["status"] == "ok").sum()),
        "dataset_rows": len(dataset),
        "dataset_ok": int((dataset["status"] == "ok").sum()),
        "dataset_left": dataset.loc[dataset["status"] != "ok", "status"].value_counts().to_dict(),
        "prediction_rows": len(predictions),
        "digest": {
            "manifest": _digest(manifest[["url", "status", "sha256"]]),
            "dataset": _digest(dataset[["sha256", "label", "split"]]),
            "predictions": _digest(
                predictions.assign(image=images, probability=predictions["probability"].round(4))[
                    ["image", "label", "probability"]
                ]
            ),
        },
    }


def _digest(frame) -> str:
    h = hashlib.sha256()
    for row in sorted(map(str, frame.itertuples(index=False))):
        h.update(row.encode())
    return h.hexdigest()[:16]


# --- the parent ---------------------------------------------------------------------------------


def run_child(size: int, runner: str, url_list: Path, model: str, stages: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", str(size), runner, str(url_list), model]
    cmd += ["--stages", *stages, "--work", str(WORK)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode:
        raise SystemExit(f"{runner} {size} failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    global WORK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--runners", nargs="+", default=["default", "dask"])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--work", type=Path, default=WORK, help=f"folder of the runs' data (default {WORK}):"
        " two benches at once each need their own"
    )  # fmt: skip
    args = parser.parse_args()
    WORK = args.work
    if args.child:
        size, runner, url_list, model = args.child
        print(json.dumps(child(int(size), runner, url_list, model, args.stages)), flush=True)
        return

    from bench_overhead import tiny_model
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    WORK.mkdir(parents=True, exist_ok=True)
    ready, end = multiprocessing.Pipe()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(end, stop), daemon=True)
    server.start()
    base = ready.recv()
    model = tiny_model(WORK / "model", SIZE)
    print(f"load average at start: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    results = []
    try:
        with prefect_test_harness(server_startup_timeout=180):
            os.environ["PREFECT_API_URL"] = str(get_current_settings().api.url)
            for size in sorted(args.sizes):
                url_list = WORK / f"urls-{size}.csv"
                write_url_list(base, size, url_list)
                for runner in args.runners:
                    results.append(run_child(size, runner, url_list, model, args.stages))
                    r = results[-1]
                    print(f"  {runner:7} {size:>7}: {sum(r['seconds'].values()):7.1f} s,"
                          f" peak RSS {r['peak_rss'] / 2**20:7.1f} MB", flush=True)  # fmt: skip
    finally:
        stop.set()
        server.join(timeout=10)
    report(results, sorted(args.sizes), args.runners)


def report(results: list[dict], sizes: list[int], runners: list[str]) -> None:
    print("\n| runner | images | scrape s | prepare s | predict s | total s | peak RSS MB |"
          " manifest rows (ok) | dataset rows (ok) | predictions |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        s = dict.fromkeys(STAGES, 0.0) | r["seconds"]
        print(f"| {r['runner']} | {r['size']:,} | {s['scrape']:.1f} | {s['prepare']:.1f} |"
              f" {s['predict']:.1f} | {sum(s.values()):.1f} | {r['peak_rss'] / 2**20:.0f} |"
              f" {r['manifest_rows']:,} ({r['manifest_ok']:,}) |"
              f" {r['dataset_rows']:,} ({r['dataset_ok']:,}) |"
              f" {r['prediction_rows']:,} |")  # fmt: skip
    print(
        "\n| runner | images | peak RSS MB: before | after scrape | after prepare | after predict |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        p = {
            k: f"{r['peaks'][k] / 2**20:.0f}" if k in r["peaks"] else "-"
            for k in ("start", *STAGES)
        }
        print(f"| {r['runner']} | {r['size']:,} | {p['start']} | {p['scrape']} | {p['prepare']} |"
              f" {p['predict']} |")  # fmt: skip
    print()
    for line in checks(results, sizes, runners):
        print(line)


def checks(results: list[dict], sizes: list[int], runners: list[str]) -> list[str]:
    lines = []
    by = {(r["runner"], r["size"]): r for r in results}
    for r in results:
        n = r["size"]
        done = r["done"]
        exact = (
            r["manifest_rows"] == n and r["manifest_ok"] == done.get("scrape", n) == n
            and ("prepare" not in done or r["dataset_rows"] == n)
            and ("predict" not in done or r["prediction_rows"] == r["dataset_ok"])
        )  # fmt: skip
        # Random images can be near-duplicates by chance (2 in 100,000 here): prepare leaves
        # them out with a status row, and predict then has one image fewer each.
        left = ", ".join(f"{k} {v}" for k, v in r.get("dataset_left", {}).items()) or "none"
        lines.append(
            f"{_ok(exact)} rows {r['runner']} {n:,}: one per URL, one dataset row per"
            f" stored image, one prediction per prepared image (left out: {left})"
        )
    for n in sizes:
        digests = {json.dumps(by[(runner, n)]["digest"]) for runner in runners}
        lines.append(f"{_ok(len(digests) == 1)} rows {n:,}: the same under {', '.join(runners)}")
    small, large = sizes[0], sizes[-1]
    if small == large:
        return lines
    allowed_ratio = TIME_RATIO_AT_5X * (large / small) / 5
    for runner in runners:
        a, b = by[(runner, small)], by[(runner, large)]
        per_image = (b["peak_rss"] - a["peak_rss"]) / (large - small)
        ratio = sum(b["seconds"].values()) / sum(a["seconds"].values())
        lines.append(
            f"{_ok(per_image < RSS_LIMIT_PER_IMAGE)} memory {runner}: peak RSS"
            f" {per_image:+.0f} B per extra image (limit {RSS_LIMIT_PER_IMAGE})"
        )
        lines.append(f"{_ok(ratio <= allowed_ratio)} time {runner}: {large:,} take {ratio:.2f}x"
                     f" the time of {small:,} (limit {allowed_ratio:.2f}x)")  # fmt: skip
    return lines


def _ok(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


if __name__ == "__main__":
    main()
