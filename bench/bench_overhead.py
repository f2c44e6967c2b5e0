"""Prefect's orchestration overhead on scrape -> prepare -> predict, and 1 vs 2 Dask workers.

    .venv/bin/python bench/bench_overhead.py [--images 5000] [--size 224] [--rounds 2]
        [--no-scaling]

5,000 generated JPEGs of 224x224 px (prepared at 224) are served on loopback by a separate
process (so the server's threads do not share the measured process's GIL). Each round runs the
three stages twice into fresh data roots: as Prefect flows (a real temporary server, task runs,
progress artifacts) and as the very same task functions called directly (`.fn`) with the
flows' own wiring (the same threads and batches in flight, plain `concurrent.futures` in place
of Prefect's task runners; the same reads and writes after the tasks).
Overhead = (flow - direct) / flow. Then prepare and predict run on Dask LocalClusters of 1 and
2 single-threaded worker processes (workers started and TensorFlow imported before timing).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.gettempdir()) / "pixelpipe-bench-overhead"
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LABEL, SHARD = "pics", 1000
SIZE = 224  # served and prepared side (--size): issue 26 asks for 5,000 images of 224 px
SCRAPE = {"label": LABEL, "allow_private_networks": True, "concurrency": 16, "per_host": 16}


# --- the site, in its own process --------------------------------------------------------------


def _serve(n: int, size: int, ready, stop) -> None:
    from tests.http_server import SiteServer, picture

    files = {f"img/{i}.jpg": picture(10_000 + i, (size, size)) for i in range(n)}
    tags = "".join(f'<img src="/img/{i}.jpg">' for i in range(n))
    files["page.html"] = f"<html><body>{tags}</body></html>".encode()
    with SiteServer(root=None, files=files) as site:
        ready.send(site.url("page.html"))
        stop.wait()


# --- the three stages, directly ----------------------------------------------------------------


def scrape_direct(page: str, data_dir: Path, run_id: str) -> int:
    from flows import scrape_images as sf
    from flows.params import ScrapeParams
    from storage.layout import Layout
    from tasks.scrape.manifest import run_reasons
    from tasks.scrape.stored import StoredIndex
    from tasks.scrape.tasks import clear_parts, dedupe_shards, download_shard, find_image_urls

    params = ScrapeParams(pages=[page], run_id=run_id, data_dir=str(data_dir), **SCRAPE)
    layout = Layout.at(params.data_dir)
    raw_dir, config, root = layout.raw(LABEL), params.settings(), layout.root.as_posix()
    index_path = Path(tempfile.mkdtemp(dir=WORK)) / "stored.sqlite"  # as the flow's, a temp file
    with StoredIndex.build(index_path, layout.root, run_id, LABEL) as index:
        found = find_image_urls.fn(params.pages, run_id, LABEL, config)
        todo, _skipped = sf._skip_rows(found["candidates"], index, None, run_id, LABEL)
    run_date = datetime.now(UTC).date()
    clear_parts(root, run_id, LABEL)
    shards = [
        download_shard.fn(
            todo[i : i + params.shard_size], run_id, LABEL, str(raw_dir), config,
            params.min_size, part=f"{LABEL}-{i // params.shard_size + 1:04d}",
            run_date=run_date, data_dir=root,
        )
        for i in range(0, len(todo), params.shard_size)
    ]  # fmt: skip
    counts = dedupe_shards.fn(
        shards, str(index_path), run_id=run_id, run_date=run_date, data_dir=root
    )
    shutil.rmtree(index_path.parent)
    run_reasons(root, run_id, LABEL)  # the flow's result reads them back too
    return counts["ok"]


def prepare_direct(data_dir: Path, run_id: str) -> int:
    from flows import prepare_dataset as pf
    from flows.gate.runners import machine_cores
    from flows.params import PrepareParams
    from storage.layout import Layout
    from tasks.prepare import columns, folders, plan
    from tasks.prepare import render as pixels
    from tasks.prepare import stamp as stamp_file
    from tasks.prepare import tasks as images

    params = PrepareParams(data_dir=str(data_dir), run_id=run_id, image_size=SIZE)
    layout = Layout.at(params.data_dir)
    dataset_dir, class_dirs = pf._resolve(params, layout)
    settings = pixels.RenderSettings(
        SIZE, params.resize_mode, params.image_format, params.quality, params.resample
    )
    spec = plan.SplitSpec(
        params.seed, params.val_fraction, params.test_fraction, None,
        params.near_duplicate_distance if params.near_duplicates else None,
    )  # fmt: skip
    names = sorted(set(class_dirs.values()))
    files = plan.list_source_files(class_dirs)
    keys = list(zip(files["source_path"], files["size"], files["mtime_ns"], strict=True))
    b = params.batch_size
    # The flow's wiring without Prefect: inspect batches on 4 threads, IN_FLIGHT ahead, and
    # render batches on 2 threads feeding the process pool, 4 ahead (flows/prepare_dataset.py).
    with ThreadPoolExecutor(4) as pool:
        batches = (keys[i : i + b] for i in range(0, len(keys), b))
        futures = (pool.submit(images.inspect_batch.fn, batch) for batch in batches)
        inspected = columns.concat(list(pf._in_flight(futures, pf.IN_FLIGHT)))
    rows = plan.plan(files, inspected, names, dataset_dir, spec, settings.suffix)
    aside = dataset_dir / folders.ASIDE_DIR / run_id
    todo, _moved = pf._pending(rows, dataset_dir, settings, params.force, aside)
    workers = machine_cores()
    sources, outputs = rows["source_path"].to_numpy(), rows["path"].to_numpy()
    try:
        batches = [todo[i : i + b] for i in range(0, len(todo), b)]
        items = (list(zip(sources[t], outputs[t], strict=True)) for t in batches)
        with ThreadPoolExecutor(2) as pool:
            futures = (pool.submit(images.render_batch.fn, i, settings, workers) for i in items)
            done = pf._in_flight(futures, 4)
            plan.record_rendered(rows, zip(batches, done, strict=True))
    finally:
        pixels.shutdown_pool()
    ok = rows["status"] == "ok"
    folders.sync_folders(dataset_dir, spec.splits, names, rows["path"], aside)
    pf._write_manifest(rows, run_id, params.dataset, layout.root)
    counts = pf._counts(rows, spec.splits, names)
    stamp = pf._stamp(run_id, settings, spec, names, counts, rows)
    stamp_file.write_stamp(dataset_dir, stamp)
    kept = int(ok.sum())
    return kept


def predict_direct(model: str, data_dir: Path, run_id: str) -> int:
    from flows import predict_batch as pb
    from tasks.predict.engines.cache import get_predictor
    from tasks.predict.inputs import collect_images
    from tasks.predict.spec import resolve_model
    from tasks.predict.tasks import predict_shard

    params = _predict_params(model, data_dir, run_id)
    spec = resolve_model(params.model, params.weights, data_dir=str(data_dir))
    paths = collect_images(params.inputs)
    decoding = pb.decoding_for(params, spec.labels)
    get_predictor(spec)
    key, run_date = pb.model_key(spec.identity), datetime.now(UTC).date()
    done = [
        predict_shard.fn(
            paths[i : i + SHARD], spec, run_id=run_id, part=f"{key}-{i // SHARD + 1:04d}",
            run_date=run_date, data_dir=str(data_dir), batch_size=params.batch_size,
            decoding=decoding,
        )
        for i in range(0, len(paths), SHARD)
    ]  # fmt: skip
    pb.replace_parts(
        "predictions", run_id=run_id, written=[s.path for s in done], group=key,
        data_dir=str(data_dir),
    )  # fmt: skip
    return sum(s.ok for s in done)


def _predict_params(model: str, data_dir: Path, run_id: str, **extra):
    from flows.params import PredictParams

    options = {"shard_size": SHARD, "batch_size": 64, "top_k": 2} | extra
    return PredictParams(
        inputs=[str(data_dir / "datasets" / "default")], model=model, run_id=run_id,
        data_dir=str(data_dir), **options,
    )  # fmt: skip


# --- the three stages as flows -----------------------------------------------------------------


def scrape_flow(page, data_dir, run_id) -> int:
    from flows.scrape_images import scrape_images

    params = {"pages": [page], "run_id": run_id, "data_dir": str(data_dir)} | SCRAPE
    return scrape_images(params=params).stored


def prepare_flow(data_dir, run_id, **extra) -> int:
    from flows.prepare_dataset import prepare_dataset

    params = {"data_dir": str(data_dir), "run_id": run_id, "image_size": SIZE} | extra
    return prepare_dataset(params=params).rendered


def predict_flow(model, data_dir, run_id, **extra) -> int:
    from flows.predict_batch import predict_batch

    return predict_batch(params=_predict_params(model, data_dir, run_id, **extra)).ok


def tiny_model(folder: Path, size: int) -> str:
    """A small CNN (2 convs, 3 classes, random weights) with its model card, as
    train_classifier leaves one."""
    import json

    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "best.keras")
    card = {"model": "tiny", "class_names": ["a", "b", "c"], "image_size": [size, size]}
    (folder / "model_card.json").write_text(json.dumps(card | {"label_mode": "categorical"}))
    return str(folder / "best.keras")


# --- measuring ---------------------------------------------------------------------------------


def timed(fn, *args, **kwargs) -> tuple[float, int]:
    # Written-back before the clock starts: prepare leaves ~5,000 files to the kernel's
    # write-back, and a scrape's per-image fsync right after waits on them (ext4 commits them
    # together): a scrape timed after a prepare took 16-31 s instead of 12.
    os.sync()
    start, cpu = time.perf_counter(), _cpu()
    n = fn(*args, **kwargs)
    CPU.append({k: after - cpu[k] for k, after in _cpu().items()})
    return time.perf_counter() - start, n


CPU: list[dict[str, float]] = []  # per timed call: CPU seconds of this process and the server


def _cpu() -> dict[str, float]:
    """CPU seconds so far of this process (all its threads) and of Prefect's server process
    (the harness runs it under uvicorn): where a flow's extra time goes on 2 cores."""
    import psutil

    me, server = psutil.Process(), 0.0
    for child in me.children(recursive=True):
        try:  # a pool worker may end while it is asked
            if "uvicorn" in " ".join(child.cmdline()[:4]):
                server += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return {"own": sum(me.cpu_times()[:2]), "server": server}


MODES = ("flow", "flow-no-heartbeat", "direct")


def one_round(page: str, model: str, r: int) -> dict[str, dict[str, float]]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    out: dict[str, dict[str, float]] = {how: {} for how in MODES}
    for how in MODES[r % 3 :] + MODES[: r % 3]:  # each mode goes first in turn
        data = WORK / f"r{r}-{how}"
        shutil.rmtree(data, ignore_errors=True)
        run = f"r{r}-{how}"
        if how.startswith("flow"):
            # Prefect 3.9 joins its flow-run heartbeat thread at the end of every flow run,
            # and that thread sleeps in whole seconds: up to ~1 s per run (0.95 s measured on
            # an empty flow). "flow-no-heartbeat" runs the same flows with heartbeats off.
            off = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None} if how.endswith("heartbeat") else {}
            with temporary_settings(updates=off):
                out[how]["scrape"], n1 = timed(scrape_flow, page, data, run)
                out[how]["prepare"], n2 = timed(prepare_flow, data, run)
                out[how]["predict"], n3 = timed(predict_flow, model, data, run)
        else:
            out[how]["scrape"], n1 = timed(scrape_direct, page, data, run)
            out[how]["prepare"], n2 = timed(prepare_direct, data, run)
            out[how]["predict"], n3 = timed(predict_direct, model, data, run)
        cpu = {k: sum(c[k] for c in CPU[-3:]) for k in ("own", "server")}
        print(f"  round {r} {how:17}: " + "  ".join(f"{k} {v:6.2f} s" for k, v in out[how].items())
              + f"  ({n1} stored, {n2} prepared, {n3} predicted; CPU s: own {cpu['own']:.1f},"
              f" Prefect server {cpu['server']:.1f})", flush=True)  # fmt: skip
    return out


def scaling(model: str, source: Path, rounds: int) -> dict[int, dict[str, list[float]]]:
    """prepare and predict with runner=dask on 1 and 2 worker processes (one thread each)."""
    from distributed import Client, LocalCluster

    results: dict[int, dict[str, list[float]]] = {}
    for workers in (1, 2):
        env = {"PREFECT_API_URL": os.environ["PREFECT_API_URL"]}
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, dashboard_address=None, env=env
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(lambda: __import__("tasks.predict.tasks") and None)  # TensorFlow, once each
            dask = {"runner": "dask", "dask_address": cluster.scheduler_address}
            times: dict[str, list[float]] = {"prepare": [], "predict": []}
            for r in range(rounds):
                data = WORK / f"scale-{workers}-{r}"
                shutil.rmtree(data, ignore_errors=True)
                shutil.copytree(source / "raw", data / "raw")
                run = f"s{workers}-{r}"
                times["prepare"].append(timed(prepare_flow, data, run, batch_size=250, **dask)[0])
                times["predict"].append(
                    timed(predict_flow, model, data, run, shard_size=500, **dask)[0]
                )
                print(f"  {workers} worker(s), round {r}: prepare {times['prepare'][-1]:.2f} s,"
                      f" predict {times['predict'][-1]:.2f} s", flush=True)  # fmt: skip
        results[workers] = times
    return results


def main() -> None:
    global SIZE  # the stage functions read it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--size", type=int, default=SIZE, help="image side, served and prepared")
    args = parser.parse_args()
    SIZE = args.size

    with served_and_harnessed(args.images, SIZE) as (page, model):
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(f"{args.images} images of {SIZE} px, {os.cpu_count()} CPUs, load average"
              f" {load}; warming up (not timed)")  # fmt: skip
        _warm(page, model)
        rounds = [one_round(page, model, r) for r in range(args.rounds)]
        report(rounds)
        if not args.no_scaling:
            report_scaling(scaling(model, WORK / "r0-direct", args.rounds))


@contextmanager
def served_and_harnessed(images: int, size: int) -> Iterator[tuple[str, str]]:
    """What every bench of the three stages runs against: `images` generated JPEGs served on
    loopback by their own process, the tiny model, and a temporary Prefect server the flows
    use. Yields (the page's URL, the model's path); stops the site after."""
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    WORK.mkdir(parents=True, exist_ok=True)
    ready, child = multiprocessing.Pipe()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(images, size, child, stop), daemon=True)
    server.start()
    page = ready.recv()
    model = tiny_model(WORK / "model", size)
    try:
        with prefect_test_harness(server_startup_timeout=180):
            os.environ["PREFECT_API_URL"] = str(get_current_settings().api.url)
            yield page, model
    finally:
        stop.set()
        server.join(timeout=10)


def _warm(page: str, model: str) -> None:
    """Import TensorFlow, trace the model and start the server's caches outside the timing."""
    from tasks.predict.inputs import collect_images
    from tasks.predict.spec import resolve_model
    from tasks.predict.tasks import predict_images

    data = WORK / "warm"
    shutil.rmtree(data, ignore_errors=True)
    scrape_flow(page, data, "warm")
    prepare_flow(data, "warm")
    spec = resolve_model(model, None)
    paths = collect_images([str(data / "datasets" / "default")])[:128]
    for _ in predict_images(paths, spec, batch_size=64, run_id="warm", decoding=_decoding()):
        pass


def _decoding():
    from tasks.predict.tasks import Decoding

    return Decoding(top_k=2, within=2)


def report(rounds: list[dict]) -> None:
    for flow in MODES[:2]:
        print(f"\n{flow}:")
        _report([{"flow": r[flow], "direct": r["direct"]} for r in rounds])


def _report(rounds: list[dict]) -> None:
    """Best of the rounds per case (other processes only ever add time), and the medians."""
    print("| stage | direct (.fn) s | flow s | overhead (best) | overhead (median) |")
    print("|---|---:|---:|---:|---:|")
    total = {k: {"flow": 0.0, "direct": 0.0} for k in (min, statistics.median)}
    for stage in ("scrape", "prepare", "predict"):
        cells = {}
        for pick in (min, statistics.median):
            for how in ("direct", "flow"):
                cells[pick, how] = pick(r[how][stage] for r in rounds)
                total[pick][how] += cells[pick, how]
        d, f = cells[min, "direct"], cells[min, "flow"]
        md, mf = cells[statistics.median, "direct"], cells[statistics.median, "flow"]
        print(f"| {stage} | {d:.2f} | {f:.2f} | {(f - d) / f:+.1%} | {(mf - md) / mf:+.1%} |")
    d, f = total[min]["direct"], total[min]["flow"]
    md, mf = total[statistics.median]["direct"], total[statistics.median]["flow"]
    print(f"| **all three** | {d:.2f} | {f:.2f} | **{(f - d) / f:+.1%}** | {(mf - md) / mf:+.1%} |")
    print("(seconds: best of the rounds; each round ran every mode, each mode first in turn)")


def report_scaling(results: dict[int, dict[str, list[float]]]) -> None:
    print("\n| stage | 1 worker s | 2 workers s | speed-up |")
    print("|---|---:|---:|---:|")
    for stage in ("prepare", "predict"):
        one, two = (min(results[w][stage]) for w in (1, 2))
        print(f"| {stage} (runner=dask) | {one:.2f} | {two:.2f} | {one / two:.2f}x |")
    print("(best of the rounds per case)")


if __name__ == "__main__":
    main()
