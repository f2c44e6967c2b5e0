"""Mountain vs forest photos: small_cnn with and without augmentation, and a frozen MobileNet.

    .venv/bin/python bench/bench_mountain_forest.py [--epochs 10] [--mobilenet-epochs 5]
        [--image-size 150] [--per-class N] [--only small_cnn,small_cnn_aug,mobilenet]
        [--mixed-precision]

Unpacks ../shared/data/mountain-forest-train.tar.gz under --work (default /tmp) and trains
through the real `train_classifier` flow, holding out 20% with the flow's own seeded
validation split. MobileNet uses the offline ImageNet features in
../shared/data/weights/mobilenet_2_5_224_tf_no_top.h5 (alpha 0.25) at 224 px.
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
# The classic Keras-blog augmentation for this kind of small photo dataset.
CLASSIC_AUGMENTATION = {
    "rotation_range": 40,
    "width_shift_range": 0.2,
    "height_shift_range": 0.2,
    "shear_range": 0.2,
    "zoom_range": (0.8, 1.2),
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


def unpack(tarball: Path, work: Path, per_class: int | None) -> Path:
    root = work / "mountain-forest"
    if not (root / "train").is_dir():
        work.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(work, filter="data")
    if not per_class:
        return root
    out = work / f"mountain-forest-{per_class}"
    if not out.is_dir():
        for cls in sorted(p for p in (root / "train").iterdir() if p.is_dir()):
            dest = out / "train" / cls.name
            dest.mkdir(parents=True)
            for f in sorted(cls.iterdir())[:per_class]:
                shutil.copy(f, dest / f.name)
    return out


def configs(args) -> dict[str, dict]:
    small = {"model": "small_cnn", "epochs": args.epochs, "image_size": args.image_size}
    return {
        "small_cnn": small,
        "small_cnn_aug": small | {"augmentation": CLASSIC_AUGMENTATION},
        "mobilenet": {
            "model": "mobilenet_transfer",
            "epochs": args.mobilenet_epochs,
            "image_size": 224,
            "alpha": 0.25,
            "weights": str(args.weights),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--mobilenet-epochs", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--per-class", type=int, default=None, help="use only N photos per class")
    ap.add_argument("--only", default="small_cnn,small_cnn_aug,mobilenet")
    ap.add_argument("--mixed-precision", action="store_true", help="train in mixed_bfloat16")
    ap.add_argument("--tarball", type=Path, default=SHARED / "mountain-forest-train.tar.gz")
    ap.add_argument(
        "--weights", type=Path, default=SHARED / "weights/mobilenet_2_5_224_tf_no_top.h5"
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/pixelpipe-bench"))
    args = ap.parse_args()

    dataset = unpack(args.tarball, args.work, args.per_class)
    from prefect.testing.utilities import prefect_test_harness

    from flows.train_classifier import train_classifier
    from storage.parquet import read_table

    data_dir = args.work / "data-mountain-forest"
    rows = []
    with prefect_test_harness(server_startup_timeout=120):
        for name in args.only.split(","):
            params = configs(args)[name] | {
                "data_dir": str(data_dir),
                "dataset_dir": str(dataset),
                "batch_size": args.batch_size,
                "validation_split": 0.2,
                "mixed_precision": args.mixed_precision,
            }
            t0 = time.perf_counter()
            result = train_classifier(params=params)
            wall = time.perf_counter() - t0
            h = read_table("epoch_history", data_dir=data_dir, run_id=result.run_id)
            later = h["seconds"].iloc[1:] if len(h) > 1 else h["seconds"]
            rows.append((name, result, len(h), h["seconds"].iloc[0], later.median(), wall))
            print(h[["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]])
    print(f"\nmountain/forest ({dataset}), 20% held out by the flow's validation_split")
    print(f"{'config':<14} {'epochs':>6} {'best_ep':>7} {'best_val_acc':>12} {'evaluated':>9}"
          f" {'epoch1_s':>8} {'later_s':>7} {'wall_s':>6}")  # fmt: skip
    for name, r, n, first, later, wall in rows:
        print(
            f"{name:<14} {n:>6} {r.best_epoch:>7} {r.best_val_accuracy:>12.4f}"
            f" {r.evaluated_val_accuracy:>9.4f} {first:>8.1f} {later:>7.1f} {wall:>6.0f}"
        )


if __name__ == "__main__":
    main()
