"""Three nights of the pipeline on growing generated data, the second one sabotaged (one epoch
at a learning rate that cannot converge), then `pixelpipe models`: the registry should keep the
sabotaged model out and predict with the champion.

    PYTHONPATH=. python bench/three_nights.py [--data-dir DIR] [--per-class 60 90 120]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.image_pipeline import image_pipeline
from storage.parquet import read_table
from tasks.demo.gallery import generate_pictures

SABOTAGE = {"epochs": 1, "learning_rate": 10.0, "optimizer": "sgd"}


def night(data_dir: Path, source: Path, n: int, per_class: int, args) -> str:
    generate_pictures(source, per_class=per_class, seed=0)  # the same first images, and more
    train = {"epochs": args.epochs, "batch_size": 16, "seed": n}
    if n == args.sabotage:
        train |= SABOTAGE
    started = time.perf_counter()
    result = image_pipeline(
        params={
            "data_dir": str(data_dir),
            "run_id": f"night-{n}",
            "source_dir": str(source),
            "prepare": {"dataset": "nightly", "image_size": args.image_size},
            "train": train,
            "predict": {"split": "test", "top_k": 1},
        }
    )
    used = set(read_table("predictions", data_dir=data_dir, run_id=result.run_id)["model_run"])
    return (
        f"night {n}: {per_class} pictures per class{' (sabotaged)' if n == args.sabotage else ''}"
        f", {time.perf_counter() - started:.0f} s: {result.decision} — {result.decision_reason}"
        f"\n  predictions made by model run(s) {sorted(used)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--per-class", type=int, nargs=3, default=[60, 90, 120])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--sabotage", type=int, default=2, choices=[1, 2, 3])
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="pixelpipe-nights-"))
    source = data_dir.parent / f"{data_dir.name}-pictures"
    lines = [night(data_dir, source, n, k, args) for n, k in enumerate(args.per_class, start=1)]
    print("\n".join(lines))
    listed = CliRunner().invoke(cli.app, ["models", "--data-dir", str(data_dir)])
    print(f"\n$ pixelpipe models --data-dir {data_dir}\n{listed.output}")


if __name__ == "__main__":
    main()
