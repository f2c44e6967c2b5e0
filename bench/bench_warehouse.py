"""Benchmark warehouse reads on a big predictions table against the naive full read.

    .venv/bin/python bench/bench_warehouse.py [--rows 1000000] [--runs 20] [--days 5]
        [--repeat 3] [--cli]

Writes `rows` predictions rows through the project's own writer (storage.parquet.write_table,
schema storage/schemas.py), `runs` runs spread over `days` run dates, under
/tmp/pixelpipe-bench-warehouse (kept for the next run with the same sizes). Then times, best
of `repeat`, each read against the same-run baseline: the naive full read (every part, every
column) filtered in pandas. `--cli` also times `pixelpipe tables` and `pixelpipe show` as a
user runs them (process start-up included). Prints one table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.counts import count_rows, table_counts  # noqa: E402
from storage.parquet import read_table, write_table  # noqa: E402

WORK = Path(tempfile.gettempdir()) / "pixelpipe-bench-warehouse"
TABLE = "predictions"
FIRST_DAY = date(2026, 11, 1)
TARGET_S = 1.0  # issue 26: one run and one day read in under a second


def generate(data_dir: Path, rows: int, runs: int, days: int) -> float:
    """Write the table through write_table (skipped when this size is there); seconds taken."""
    stamp = data_dir / f"generated-{rows}-{runs}-{days}"
    if stamp.exists():
        return 0.0
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    start = time.perf_counter()
    for run in range(runs):
        run_id = run_name(run)
        day = FIRST_DAY + timedelta(days=run % days)
        write_table(TABLE, run_rows(run_id, rows // runs, run), run_id=run_id,
                    data_dir=data_dir, run_date=day)  # fmt: skip
    stamp.touch()
    return time.perf_counter() - start


def run_name(run: int) -> str:
    return f"predict-{run:04d}"


def run_rows(run_id: str, n: int, seed: int) -> pd.DataFrame:
    """n rows like predict_batch writes: 5 ranked labels per image, a few failed images."""
    rng = np.random.default_rng(seed)
    images = np.arange(n) // 5
    rank = (np.arange(n) % 5 + 1).astype(np.int16)
    label_index = rng.integers(0, 1000, n).astype(np.int32)
    failed = rng.random(n) < 0.01
    return pd.DataFrame({
        "run_id": run_id,
        "model": "resnet50",
        "image": [f"/data/datasets/photos/test/c{i % 200}/{i:064x}.jpg" for i in images],
        "rank": rank,
        "label": [f"class_{i}" for i in label_index],
        "label_index": label_index,
        "probability": rng.random(n).astype(np.float32),
        "is_target": rank == 1,
        "target_probability": rng.random(n).astype(np.float32),
        "status": np.where(failed, "corrupt", "ok"),
        "error": np.where(failed, "OSError: image file is truncated", None),
        "preprocessing": "crop(0.875)/bilinear; caffe",
        "model_run": None,
    })  # fmt: skip


def best_of(repeat: int, action: Callable[[], object]) -> tuple[float, object]:
    """(best wall seconds, the last result) over `repeat` calls."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - start)
    return best, result


def cases(data_dir: Path, runs: int, days: int) -> list[tuple[str, Callable[[], object]]]:
    """(name, action) of every measured read; the first is the baseline."""
    run = run_name(runs // 2)
    day = str(FIRST_DAY + timedelta(days=(runs // 2) % days))

    def naive_run() -> int:
        frame = read_table(TABLE, data_dir=data_dir)
        return len(frame[frame["run_id"] == run])

    return [
        ("naive: full read, filter in pandas", naive_run),
        ("read one run", lambda: len(read_table(TABLE, data_dir=data_dir, run_id=run))),
        ("read one run, 3 columns", lambda: len(read_columns(data_dir, run))),
        ("read one day", lambda: len(read_table(TABLE, data_dir=data_dir, run_date=day))),
        ("table_counts (every table)", lambda: table_counts(data_dir)[TABLE]),
        ("naive counts: run_id of every row", lambda: naive_counts(data_dir)),
        ("show: first 20 rows + row count", lambda: show_like(data_dir, None)),
        ("show --run: 20 rows + row count", lambda: show_like(data_dir, run)),
    ]


def read_columns(data_dir: Path, run: str) -> pd.DataFrame:
    return read_table(
        TABLE, data_dir=data_dir, run_id=run, columns=["image", "label", "probability"]
    )


def naive_counts(data_dir: Path) -> tuple[int, int]:
    """What table_counts did before: the run_id column of every part of the table."""
    frame = read_table(TABLE, data_dir=data_dir, columns=["run_id"])
    return len(frame), frame["run_id"].nunique()


def show_like(data_dir: Path, run: str | None) -> tuple[int, int]:
    """What `pixelpipe show` needs: the rows it prints and how many there are in all."""
    head = read_table(TABLE, data_dir=data_dir, run_id=run, limit=20)
    return len(head), count_rows(TABLE, data_dir=data_dir, run_id=run)


def cli_cases(data_dir: Path) -> list[tuple[str, Callable[[], object]]]:
    """The commands as a user runs them: a new process each time."""
    pixelpipe = Path(sys.executable).with_name("pixelpipe")
    env = os.environ | {"PYTHONPATH": str(ROOT)}

    def run(*args: str) -> Callable[[], int]:
        command = [str(pixelpipe), *args, "--data-dir", str(data_dir)]
        return lambda: subprocess.run(command, env=env, capture_output=True, check=True).returncode

    return [
        ("$ pixelpipe --help (start-up only)", lambda: subprocess.run(
            [str(pixelpipe), "--help"], env=env, capture_output=True, check=True).returncode),
        ("$ pixelpipe tables", run("tables")),
        ("$ pixelpipe show predictions", run("show", TABLE)),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="best of N per case")
    parser.add_argument("--cli", action="store_true", help="also time the pixelpipe commands")
    args = parser.parse_args()
    data_dir = WORK / "data"
    print(f"load avg at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    written = generate(data_dir, args.rows, args.runs, args.days)
    parts = sorted((data_dir / "warehouse" / TABLE).rglob("*.parquet"))
    size = sum(p.stat().st_size for p in parts) / 2**20
    sizes = f"{args.rows} rows, {args.runs} runs over {args.days} days, {len(parts)} parts"
    print(
        f"{TABLE}: {sizes}, {size:.1f} MiB" + (f"; written in {written:.1f} s" if written else "")
    )
    measured = cases(data_dir, args.runs, args.days) + (cli_cases(data_dir) if args.cli else [])
    print(f"{'case':<38} {'best s':>8} {'x naive':>8}  result")
    baseline = None
    for name, action in measured:
        seconds, result = best_of(args.repeat, action)
        baseline = baseline or seconds
        print(f"{name:<38} {seconds:>8.3f} {baseline / seconds:>7.1f}x  {result}")
    print(f"target: one run and one day in < {TARGET_S:.0f} s (files in the page cache after"
          f" the first pass); load avg at the end: {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
