"""Predict shard time with tf.data's autotuning on (the baseline) and off (what image_batches uses).

    .venv/bin/python bench/predict_shards.py [--images 5000] [--shard 1000] [--rounds 2]

Generated 224 px JPEGs in a temporary folder and a 2-conv Keras model with random weights
(bench_overhead.tiny_model); `predict_shard.fn` runs over each 1,000-image shard in turn, once
per setting per round (settings alternate); every shard's seconds are printed. With autotuning
on, some shards take 1.1 s longer (2.57 s instead of 1.46 s on 2 cores), all of it at the end
of the iteration, after the last batch; with it off, none does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--shard", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import tensorflow as tf
    from bench_overhead import tiny_model

    from tasks.predict import images as pipeline
    from tasks.predict import tasks as predict
    from tasks.predict.spec import resolve_model
    from tests.http_server import picture

    work = Path(tempfile.mkdtemp(prefix="pixelpipe-bench-shards-"))
    folder = work / "images"
    folder.mkdir()
    paths = []
    for i in range(args.images):
        path = folder / f"{i}.jpg"
        path.write_bytes(picture(10_000 + i, (224, 224)))
        paths.append(str(path))
    spec = resolve_model(tiny_model(work / "model", 224), None)
    settings = {"autotune on (baseline)": tf.data.Options(), "autotune off": pipeline._FIXED}
    decoding = predict.Decoding(top_k=2, within=2)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{args.images} images, shards of {args.shard}, {os.cpu_count()} CPUs, load {load}")
    shards: dict[str, list[float]] = {name: [] for name in settings}
    for r in range(args.rounds + 1):  # round 0 warms up (model trace, file cache): not kept
        for name, options in settings.items():
            pipeline._FIXED = options
            for i in range(0, len(paths), args.shard):
                start = time.perf_counter()
                predict.predict_shard.fn(
                    paths[i : i + args.shard], spec, run_id="bench", part=f"b-{i:06d}",
                    run_date=date.today(), data_dir=str(work / "data"), batch_size=64,
                    decoding=decoding,
                )  # fmt: skip
                seconds = time.perf_counter() - start
                if r:
                    shards[name].append(seconds)
                    shard = i // args.shard
                    print(f"  round {r} {name:24} shard {shard}: {seconds:5.2f} s", flush=True)
    for name, times in shards.items():
        late = sum(t > statistics.median(shards["autotune off"]) + 0.5 for t in times)
        print(f"{name:24}: total {sum(times):6.2f} s, median shard {statistics.median(times):.2f}"
              f" s, {late} of {len(times)} shards over 0.5 s late")  # fmt: skip
    base, new = (sum(shards[n]) for n in settings)
    print(f"autotune off / on: {new / base:.2f}x the time")


if __name__ == "__main__":
    main()
