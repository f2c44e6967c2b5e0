"""CIFAR-10 with cifar_cnn through the real train_classifier flow: val accuracy and s/epoch.

    .venv/bin/python bench/bench_cifar10.py [--epochs 8] [--per-class 5000] [--batch-size 32]

Unpacks ../shared/data/cifar10-jpg.tar.gz (or --tarball) under --work (default /tmp), uses
its test/ split (1,000 per class) as val/, and trains through `train_classifier` on a
temporary Prefect server. The classic recipe reaches about 0.70 after 8 epochs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
import time
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def unpack(tarball: Path, work: Path) -> Path:
    root = work / "cifar10"
    if not (root / "train").is_dir():
        work.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(work, filter="data")
    return root


def subset(root: Path, out: Path, per_class: int, val_per_class: int) -> Path:
    """train/ and val/ (= CIFAR's test/) with at most N images per class, as hard links."""
    marker = out / f".subset-{per_class}-{val_per_class}"
    if marker.exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    for split, source, limit in (("train", "train", per_class), ("val", "test", val_per_class)):
        for cls in sorted(p for p in (root / source).iterdir() if p.is_dir()):
            dest = out / split / cls.name
            dest.mkdir(parents=True)
            for f in sorted(cls.iterdir())[:limit]:
                os.link(f, dest / f.name)
    marker.touch()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--per-class", type=int, default=5000, help="train images per class")
    ap.add_argument("--val-per-class", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mixed-precision", action="store_true")
    ap.add_argument("--tarball", type=Path, default=SHARED / "cifar10-jpg.tar.gz")
    ap.add_argument("--work", type=Path, default=Path("/tmp/pixelpipe-bench"))
    args = ap.parse_args()

    root = unpack(args.tarball, args.work)
    dataset = subset(root, args.work / "cifar10-ds", args.per_class, args.val_per_class)
    from prefect.testing.utilities import prefect_test_harness

    from flows.train_classifier import train_classifier
    from storage.parquet import read_table

    data_dir = args.work / "data-cifar10"
    t0 = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        result = train_classifier(
            params={
                "data_dir": str(data_dir),
                "dataset_dir": str(dataset),
                "model": "cifar_cnn",
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "mixed_precision": args.mixed_precision,
            }
        )
    wall = time.perf_counter() - t0
    history = read_table("epoch_history", data_dir=data_dir, run_id=result.run_id)
    print(f"\ncifar_cnn on CIFAR-10: {args.per_class}/class train, {args.val_per_class}/class val")
    print(f"{'epoch':>5} {'loss':>7} {'acc':>7} {'val_loss':>8} {'val_acc':>7} {'seconds':>8}")
    for r in history.itertuples():
        print(
            f"{r.epoch:>5} {r.loss:>7.4f} {r.accuracy:>7.4f} {r.val_loss:>8.4f}"
            f" {r.val_accuracy:>7.4f} {r.seconds:>8.1f}"
        )
    steady = history["seconds"].iloc[1:] if len(history) > 1 else history["seconds"]
    print(
        f"best epoch {result.best_epoch}: val_accuracy {result.best_val_accuracy:.4f} "
        f"(evaluated {result.evaluated_val_accuracy:.4f}); first epoch "
        f"{history['seconds'].iloc[0]:.1f} s (decode + cache), later epochs "
        f"{steady.median():.1f} s median; flow wall {wall:.0f} s"
    )


if __name__ == "__main__":
    main()
