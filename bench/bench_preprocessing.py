"""Top-1 of an ImageNet classifier under each resize protocol, and what cropping costs in the
tf.data decode pipeline.

The shared int8 MobileNetV2 .tflite on the 200 shared ImageNet photos (one per class 0-199;
the label is the WordNet id in the file name). Decode throughput: the prediction pipeline
(tasks.predict.images.image_batches) alone, every protocol in turn, `--rounds` times, best
round kept; ratios against the classic stretch measured in the same run.

    tar xzf ../shared/data/imagenet-samples-200.tar.gz -C /tmp/in
    PYTHONPATH=. python bench/bench_preprocessing.py /tmp/in/imagenet-samples \
        ../shared/data/weights/tf2_mobilenet_v2_1.0_224_ptq.tflite
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from tasks.predict import engines
from tasks.predict.images import image_batches
from tasks.predict.preprocess import Preprocessing
from tasks.predict.spec import resolve_model

PROTOCOLS = {
    "classic: stretch, nearest": ("stretch", "nearest", None),
    "stretch, bilinear": ("stretch", "bilinear", None),
    "pad, bilinear": ("pad", "bilinear", None),
    "ImageNet: crop 0.875, bilinear (default)": ("crop", "bilinear", 0.875),
    "crop 1.0, bilinear": ("crop", "bilinear", 1.0),
}


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else platform.processor()


def accuracy(folder: Path, model: str) -> dict[str, tuple[float, float]]:
    paths = sorted(str(p) for p in folder.glob("*.JPEG"))
    results = {}
    for name, (mode, interpolation, fraction) in PROTOCOLS.items():
        spec = resolve_model(
            model, resize_mode=mode, interpolation=interpolation, crop_fraction=fraction
        )
        predict = engines.get_predictor(spec)
        index = {w: i for i, w in enumerate(spec.labels.wnids)}
        truth = np.array([index[Path(p).name.split("_")[0]] for p in paths])
        probs = np.concatenate(
            [
                predict(x)
                for x, _, _ in image_batches(paths, spec.image_size, 25, spec.preprocessing)
            ]
        )
        top5 = np.argsort(-probs, axis=1)[:, :5]
        results[name] = (
            float(np.mean(top5[:, 0] == truth)),
            float(np.mean((top5 == truth[:, None]).any(1))),
        )
    return results


def throughput(folder: Path, rounds: int) -> dict[str, float]:
    paths = sorted(str(p) for p in folder.glob("*.JPEG"))
    best: dict[str, float] = {}
    for _ in range(rounds):  # protocols interleaved, so machine noise hits each alike
        for name, (mode, interpolation, fraction) in PROTOCOLS.items():
            prep = Preprocessing(mode, interpolation, fraction or 1.0)
            started = time.perf_counter()
            for _batch in image_batches(paths, (224, 224), 32, prep):
                pass
            rate = len(paths) / (time.perf_counter() - started)
            best[name] = max(best.get(name, 0.0), rate)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("model")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu()}")
    scores = accuracy(args.folder, args.model)
    rates = throughput(args.folder, args.rounds)
    base = rates["classic: stretch, nearest"]
    print(f"{'protocol':<42} {'top-1':>6} {'top-5':>6} {'decode img/s':>13} {'vs classic':>10}")
    for name, (top1, top5) in scores.items():
        print(
            f"{name:<42} {top1:>6.3f} {top5:>6.3f} {rates[name]:>13.1f} {rates[name] / base:>9.2f}x"
        )


if __name__ == "__main__":
    main()
