"""Training samples/s: our tf.data pipeline (with and without augmentation) vs. in-memory
NumPy arrays (the ceiling) vs. Keras' legacy ImageDataGenerator, same model, one run.

    .venv/bin/python bench/bench_input_pipeline.py [--images 2000] [--size 64] [--epochs 4]

Writes --images PNGs (half mountain, half forest, resized to --size) from
../shared/data/mountain-forest-train.tar.gz, then fits small_cnn (batch 32) on each input.
samples/s is the median over epochs 2.. (epoch 1 pays tracing and filling the cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tarfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# The full seed augmentation of the issue (rotation 20, shear 0.1, brightness 0.5-1.0,
# zoom 0.8-1.2, horizontal flip); shear is in degrees in both implementations.
FULL = {
    "rotation_range": 20,
    "shear_range": 0.1,
    "brightness_range": (0.5, 1.0),
    "zoom_range": (0.8, 1.2),
    "horizontal_flip": True,
}
LIGHT = {"rotation_range": 20, "zoom_range": (0.8, 1.2), "horizontal_flip": True}


def make_pngs(tarball: Path, work: Path, count: int, size: int) -> Path:
    from PIL import Image

    out = work / f"pipeline-{count}-{size}"
    if (out / ".done").exists():
        return out
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        per_class: dict[str, list] = {}
        for m in sorted(members, key=lambda m: m.name):
            per_class.setdefault(m.name.split("/")[-2], []).append(m)
        for cls, items in per_class.items():
            (out / "train" / cls).mkdir(parents=True, exist_ok=True)
            for m in items[: count // len(per_class)]:
                with Image.open(tar.extractfile(m)) as im:
                    im.convert("RGB").resize((size, size)).save(
                        out / "train" / cls / (Path(m.name).stem + ".png")
                    )
    (out / ".done").touch()
    return out


class EpochTimer:
    def __init__(self):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(cb, epoch, logs=None):
                cb.t0 = time.perf_counter()

            def on_epoch_end(cb, epoch, logs=None):
                self.seconds.append(time.perf_counter() - cb.t0)

        self.seconds: list[float] = []
        self.callback = _Timer()


def fit(data, epochs: int, n: int, size: int, steps: int | None = None) -> tuple[float, float]:
    """Fit a fresh small_cnn; return samples/s (median and best of the epochs after the
    first: on a shared machine the best epoch is the least disturbed one)."""
    from tasks.models import build_model

    model = build_model("small_cnn", (size, size, 3), 2)
    timer = EpochTimer()
    kw = {"epochs": epochs, "verbose": 0, "callbacks": [timer.callback], "steps_per_epoch": steps}
    if isinstance(data, tuple):  # NumPy arrays: Keras batches them itself
        model.fit(data[0], data[1], batch_size=32, shuffle=True, **kw)
    else:
        model.fit(data, **kw)
    later = timer.seconds[1:] or timer.seconds
    return n / statistics.median(later), n / min(later)


def ours(dataset: Path, size: int, augmentation: dict | None, fused: bool = True):
    from tasks import train
    from tasks.train import TrainSpec, make_datasets

    train.FUSED_AUGMENTATION = fused

    spec = TrainSpec(
        run_id="bench", data_dir="/tmp", dataset_dir=str(dataset), model="small_cnn",
        class_names=["forest", "mountain"], image_size=(size, size), epochs=1,
        augmentation=augmentation or {}, validation_split=0.0,
    )  # fmt: skip
    train, _ = make_datasets_train_only(spec, make_datasets)
    return train


def make_datasets_train_only(spec, make_datasets):
    # Our loader wants a val/ folder or a split; point val/ at train/ (unused here).
    val = Path(spec.dataset_dir) / "val"
    if not val.exists():
        val.symlink_to(Path(spec.dataset_dir) / "train", target_is_directory=True)
    return make_datasets(spec)


def numpy_arrays(dataset: Path):
    import numpy as np
    from PIL import Image

    files = sorted((dataset / "train").glob("*/*.png"))
    x = np.stack([np.asarray(Image.open(f), "float32") for f in files])
    y = np.array([f.parent.name == "mountain" for f in files], "float32")
    return x, y


def idg(dataset: Path, size: int, augmentation: dict):
    import tensorflow as tf

    gen = tf.keras.preprocessing.image.ImageDataGenerator(**augmentation)
    return gen.flow_from_directory(
        dataset / "train", target_size=(size, size), batch_size=32, class_mode="binary", seed=1
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--tarball", type=Path, default=SHARED / "mountain-forest-train.tar.gz")
    ap.add_argument("--work", type=Path, default=Path("/tmp/pixelpipe-bench"))
    args = ap.parse_args()
    dataset = make_pngs(args.tarball, args.work, args.images, args.size)
    n = len(list((dataset / "train").glob("*/*.png")))
    x, y = numpy_arrays(dataset)
    size, e = args.size, args.epochs
    results = {}
    runs = {
        "numpy arrays in memory (ceiling)": lambda: fit((x, y), e, n, size),
        "tf.data cached, no augmentation": lambda: fit(ours(dataset, size, None), e, n, size),
        "tf.data + flip/rotation/zoom": lambda: fit(ours(dataset, size, LIGHT), e, n, size),
        "tf.data + full seed augmentation": lambda: fit(ours(dataset, size, FULL), e, n, size),
        "tf.data + full, one Keras layer per knob": lambda: fit(
            ours(dataset, size, FULL, fused=False), e, n, size
        ),
        "ImageDataGenerator + full seed augmentation": lambda: fit(
            idg(dataset, size, FULL), e, n, size
        ),
    }
    for name, run in runs.items():
        results[name] = run()
        print(f"{name:<46} {results[name][0]:>8.0f} samples/s (median)", flush=True)
    print(f"\nsmall_cnn, batch 32, {n} PNGs at {size}x{size}, epochs 2..{e}: median | best")
    print(f"{'input':<46} {'samples/s':>13} {'vs IDG':>13} {'vs tf.data plain':>16}")
    for name, rates in results.items():
        cells = []
        for i in (0, 1):
            base = results["ImageDataGenerator + full seed augmentation"][i]
            plain = results["tf.data cached, no augmentation"][i]
            cells.append((rates[i], rates[i] / base, rates[i] / plain))
        (m, mb, mp), (b, bb, bp) = cells
        print(f"{name:<46} {m:>6.0f}|{b:<6.0f} {mb:>5.2f}x|{bb:<5.2f}x {mp:>7.2f}x|{bp:.2f}x")


if __name__ == "__main__":
    main()
