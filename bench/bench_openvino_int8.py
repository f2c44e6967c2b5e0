"""OpenVINO int8 vs fp32 on trained mountain/forest models: validation accuracy and speed.

    .venv/bin/python bench/bench_openvino_int8.py [--epochs 3] [--image-size 128]
        [--mobilenet-epochs 2] [--only small_cnn,mobilenet] [--calibration-size 300]

Trains through the real `train_classifier` flow on ../shared/data/mountain-forest-train.tar.gz
(unpacked under --work, 20% held out by the flow's seeded validation_split; a model already
trained there is reused), then runs predict's OpenVINO preparation: fp32 IR, int8 by NNCF
calibrated on the training images, and fp32 vs int8 accuracy on the held-out images (the check
predict_batch refuses int8 with). Speed: every engine on the preloaded validation images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = ROOT.parent / "shared" / "data"
BATCH = 32


def train(name: str, args, dataset: Path, data_dir: Path) -> Path:
    """best.keras of this config, trained by the flow unless an earlier run finished it."""
    import json

    from flows.train_classifier import train_classifier

    run_id = f"ov-{name}-{args.image_size if name == 'small_cnn' else 224}"
    best = data_dir / "models" / run_id / "best.keras"
    card = best.parent / "model_card.json"
    if best.is_file() and json.loads(card.read_text()).get("status") == "trained":
        return best
    config = {
        "small_cnn": {"model": "small_cnn", "epochs": args.epochs, "image_size": args.image_size},
        "mobilenet": {
            "model": "mobilenet_transfer",
            "epochs": args.mobilenet_epochs,
            "image_size": 224,
            "alpha": 0.25,
            "weights": str(SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"),
        },
    }[name]
    params = config | {
        "data_dir": str(data_dir),
        "dataset_dir": str(dataset),
        "validation_split": 0.2,
        "run_id": run_id,
    }
    started = time.perf_counter()
    result = train_classifier(params=params)
    print(f"  trained {name} in {time.perf_counter() - started:.0f} s: {result.model_path}")
    return Path(result.model_path)


def rate(predict, x, repeats: int = 2) -> tuple[float, float]:
    """(img/s, img per CPU-second), best of `repeats` passes over x in batches of 32."""
    predict(x[:BATCH])
    best, cpu = 1e9, 1e9
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for i in range(0, len(x), BATCH):
            predict(x[i : i + BATCH])
        best, cpu = min(best, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return len(x) / best, len(x) / cpu


def measure(best: Path, calibration_size: int) -> dict:
    from tasks.predict.engines.cache import get_predictor
    from tasks.predict.engines.openvino_ir import pixels, prepare_openvino, trained_splits
    from tasks.predict.spec import resolve_model

    spec = resolve_model(str(best))
    specs, infos = {"keras": spec}, {}
    for precision in ("fp32", "bf16", "int8"):
        started = time.perf_counter()
        specs[precision], infos[precision] = prepare_openvino.fn(
            spec, precision, images=[], calibration_size=calibration_size, max_accuracy_drop=100
        )
        print(f"  {precision}: {time.perf_counter() - started:.1f} s, {infos[precision]}")
    x, _ = pixels(spec, trained_splits(spec)["val"])
    speed = {name: rate(get_predictor(s), x) for name, s in specs.items()}
    return {"spec": spec, "int8": infos["int8"], "speed": speed, "val": len(x)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--mobilenet-epochs", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--only", default="small_cnn,mobilenet")
    ap.add_argument("--calibration-size", type=int, default=300)
    ap.add_argument("--work", type=Path, default=Path("/tmp/pixelpipe-bench"))
    args = ap.parse_args()

    from bench_mountain_forest import unpack
    from prefect.testing.utilities import prefect_test_harness

    dataset = unpack(SHARED / "mountain-forest-train.tar.gz", args.work, None)
    data_dir = args.work / "data-openvino-int8"
    results = {}
    with prefect_test_harness(server_startup_timeout=180):
        for name in args.only.split(","):
            results[name] = measure(train(name, args, dataset, data_dir), args.calibration_size)
    report(results, args.calibration_size)


def report(results: dict, calibration_size: int) -> None:
    print(f"\nmountain/forest, 20% held out; int8 calibrated on {calibration_size} train images")
    print(f"{'model':<10} {'val':>4} {'acc fp32':>8} {'acc int8':>8} {'drop pts':>8}"
          f" | img/s: {'keras':>6} {'ov fp32':>13} {'ov bf16':>13} {'ov int8':>13}")  # fmt: skip
    for name, r in results.items():
        i, s = r["int8"], r["speed"]
        base = s["keras"][0]
        cols = " ".join(
            f"{s[p][0]:6.0f} ({s[p][0] / base:4.1f}x)" for p in ("fp32", "bf16", "int8")
        )
        print(
            f"{name:<10} {r['val']:>4} {i.accuracy_fp32:>8.4f} {i.accuracy_int8:>8.4f}"
            f" {i.accuracy_drop_points:>8.2f} |        {base:6.0f} {cols}"
        )
    print("img per CPU-second: " + "; ".join(
        f"{n}: " + ", ".join(f"{k} {v[1]:.0f}" for k, v in r["speed"].items())
        for n, r in results.items()
    ))  # fmt: skip


if __name__ == "__main__":
    main()
