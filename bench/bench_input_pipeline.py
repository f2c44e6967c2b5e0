"""Training samples/s: our tf.data pipeline (with and without augmentation) vs. in-memory
NumPy arrays (the ceiling) vs. Keras' legacy ImageDataGenerator, same model, one run.

    .venv/bin/python bench/bench_input_pipeline.py [--images 2000] [--size 64] [--epochs 5]

Writes --images PNGs (half mountain, half forest, resized to --size) from
../shared/data/mountain-forest-train.tar.gz, then fits small_cnn (batch 32) on each input.
After one warm-up epoch each (tracing, filling the cache), the inputs take turns epoch by
epoch, so load from other processes hits all alike; the best epoch is the least disturbed.
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


class Runner:
    """A fresh small_cnn bound to one input; `.epoch()` trains one epoch and returns its
    wall seconds (the model's train function is traced once, on the warm-up epoch)."""

    def __init__(self, data, size: int):
        import keras

        from tasks.train.models import build_model

        self.model, self.data, self.seconds = build_model("small_cnn", (size, size, 3), 2), data, []
        runner = self

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                runner.seconds.append(time.perf_counter() - self.t0)

        self.timer = _Timer()

    def epoch(self) -> float:
        kw = {"epochs": 1, "verbose": 0, "callbacks": [self.timer]}
        if isinstance(self.data, tuple):  # NumPy arrays: Keras batches them itself
            self.model.fit(self.data[0], self.data[1], batch_size=32, shuffle=True, **kw)
        else:
            self.model.fit(self.data, **kw)
        return self.seconds[-1]


def ours(dataset: Path, size: int, augmentation: dict | None, fused: bool = True):
    """pixelpipe's training input; fused=False swaps in one Keras layer per knob
    (bench/augment_per_knob.py), mapped over the same batches."""
    import keras
    import tensorflow as tf

    from tasks.train.inputs import make_datasets
    from tasks.train.spec import TrainSpec

    spec = TrainSpec(
        run_id="bench", data_dir="/tmp", dataset_dir=str(dataset), model="small_cnn",
        class_names=["forest", "mountain"], image_size=(size, size), epochs=1,
        augmentation=(augmentation if fused else None) or {}, validation_split=0.0,
    )  # fmt: skip
    train, _ = make_datasets_train_only(spec, make_datasets)
    if fused:
        return train
    from augment_per_knob import per_knob_layers  # bench/ is on sys.path when run as a script

    augment = keras.Sequential(per_knob_layers(augmentation, spec.seed))
    return train.map(lambda x, y: (augment(x, training=True), y), tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


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
    ap.add_argument("--epochs", type=int, default=5, help="measured epochs per input")
    ap.add_argument("--tarball", type=Path, default=SHARED / "mountain-forest-train.tar.gz")
    ap.add_argument("--work", type=Path, default=Path("/tmp/pixelpipe-bench"))
    args = ap.parse_args()
    dataset = make_pngs(args.tarball, args.work, args.images, args.size)
    n = len(list((dataset / "train").glob("*/*.png")))
    x, y = numpy_arrays(dataset)
    size, rounds = args.size, args.epochs
    inputs = {
        "numpy arrays in memory (ceiling)": lambda: (x, y),
        "tf.data cached, no augmentation": lambda: ours(dataset, size, None),
        "tf.data + flip/rotation/zoom": lambda: ours(dataset, size, LIGHT),
        "tf.data + full seed augmentation": lambda: ours(dataset, size, FULL),
        "tf.data + full, one Keras layer per knob": lambda: ours(dataset, size, FULL, False),
        "ImageDataGenerator + full seed augmentation": lambda: idg(dataset, size, FULL),
    }
    runners = {name: Runner(make(), size) for name, make in inputs.items()}
    for name, runner in runners.items():  # warm-up: tracing, filling caches
        print(f"warm-up {name}: {runner.epoch():.1f} s", flush=True)
    # Round-robin, so load from other processes on this shared machine hits every input alike.
    for r in range(rounds):
        for runner in runners.values():
            runner.epoch()
        print(f"round {r + 1}/{rounds} done", flush=True)
    rates = {name: [n / s for s in rn.seconds[1:]] for name, rn in runners.items()}
    table(rates, n, size, rounds)


def table(rates: dict[str, list[float]], n: int, size: int, rounds: int) -> None:
    print(f"\nsmall_cnn, batch 32, {n} PNGs at {size}x{size}; {rounds} interleaved epochs each")
    print(f"{'input':<46} {'median':>7} {'best':>7} {'vs IDG':>7} {'vs plain':>8}  (best)")
    best = {name: max(r) for name, r in rates.items()}
    base = best["ImageDataGenerator + full seed augmentation"]
    plain = best["tf.data cached, no augmentation"]
    for name, r in rates.items():
        print(
            f"{name:<46} {statistics.median(r):>7.0f} {best[name]:>7.0f}"
            f" {best[name] / base:>6.2f}x {best[name] / plain:>7.2f}x"
        )


if __name__ == "__main__":
    main()
