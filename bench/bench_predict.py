"""Benchmark predict_batch: the classic per-image loop vs our pipeline vs the model alone.

    .venv/bin/python bench/bench_predict.py [--classic 64] [--repeats 2] [--no-flow]

On the 200 shared ImageNet sample photos (../shared/data/imagenet-samples-200.tar.gz, unpacked
under /tmp), ResNet50 with random weights (same compute as ImageNet weights), batch 32:
  (a) classic: load_img -> img_to_array -> preprocess_input -> model.predict, one image a call
  (b) pipeline: our task functions (tf.data decoding + compiled model), model already loaded
  (c) model: the compiled model alone on preloaded pixels (the ceiling on this CPU)
  flow: the whole predict_batch flow under Prefect, model load and server start included
float32 and mixed_bfloat16 for (b) and (c), bf16-vs-fp32 agreement (ResNet50 random weights,
and real ImageNet features: MobileNet 0.25 from ../shared/data/weights), the real TFLite
MobileNetV2's top-1/top-5 accuracy, and every variant's peak RSS (each runs in its own process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.gettempdir()) / "pixelpipe-bench-predict"
SHARED = ROOT.parent / "shared" / "data"
TARBALL = SHARED / "imagenet-samples-200.tar.gz"
TFLITE = SHARED / "weights" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
MOBILENET_NOTOP = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
os.environ.setdefault("PREFECT_HOME", str(WORK / "prefect-home"))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
BATCH = 32

from predict_tables import report  # noqa: E402  (bench/ is sys.path[0] for a script)


def photos() -> list[str]:
    samples = WORK / "imagenet-samples"
    if not samples.is_dir():
        WORK.mkdir(parents=True, exist_ok=True)
        with tarfile.open(TARBALL) as tar:
            tar.extractall(WORK, filter="data")
    return sorted(str(p) for p in samples.glob("*.JPEG"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def best_of(repeats: int, run) -> dict:
    """Fastest wall time of `repeats` runs (the CPU is shared: the minimum is least disturbed),
    and the least CPU time (this process, all threads): steadier than wall time when shared."""
    walls, cpus = [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return {"seconds": min(walls), "cpu_seconds": min(cpus)}


# ---- variants (each in its own process) ----------------------------------------------------------


def variant_classic(n: int, repeats: int) -> dict:
    import keras
    import numpy as np

    from tasks.predict.engines.keras import build_backbone

    paths = photos()[:n]
    model = build_backbone("resnet50", None, classifier_activation="softmax")
    preprocess = keras.applications.resnet50.preprocess_input
    out = []

    def run() -> None:
        out.clear()
        for path in paths:
            x = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(224, 224)))
            out.append(model.predict(preprocess(x[None]), verbose=0)[0])

    model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)  # warm-up
    timing = best_of(repeats, run)
    np.save(WORK / "classic.npy", np.stack(out))
    return {"images": n} | timing


def _spec(engine: str):
    """fp32 / bf16: Keras (bf16 = mixed_bfloat16); ov-fp32 / ov-bf16 / ov-int8: OpenVINO, the IR
    converted (int8: quantized on the 200 photos, the run's inputs) on first use and cached."""
    from tasks.predict.spec import resolve_model

    spec = resolve_model("resnet50", "none", mixed_precision=engine == "bf16")
    if not engine.startswith("ov-"):
        return spec
    from tasks.predict.engines.openvino_ir import prepare_openvino

    started = time.perf_counter()
    spec, info = prepare_openvino.fn(
        spec, engine[3:], images=photos(), calibration_size=200, max_accuracy_drop=100
    )
    print(f"{engine}: prepared in {time.perf_counter() - started:.1f} s: {info}", file=sys.stderr)
    return spec


def variant_pipeline(engine: str, repeats: int) -> dict:
    import numpy as np

    from tasks.predict.engines.cache import get_predictor
    from tasks.predict.tasks import Decoding, predict_images

    paths, spec = photos(), _spec(engine)
    predict = get_predictor(spec)
    predict(np.zeros((BATCH, 224, 224, 3), np.float32))  # trace once, as a flow run's first batch
    rows: list[dict] = []

    def run() -> None:
        rows.clear()
        for batch in predict_images(
            paths, spec, batch_size=BATCH, run_id="bench", decoding=Decoding(top_k=1)
        ):
            rows.extend(batch)

    timing = best_of(repeats, run)
    assert len(rows) == len(paths) and all(r["status"] == "ok" for r in rows)
    return {"images": len(paths)} | timing


def variant_model(engine: str, repeats: int) -> dict:
    import numpy as np

    from tasks.predict.engines.cache import get_predictor
    from tasks.predict.images import load_pixels

    paths, spec = photos(), _spec(engine)
    pixels = np.stack([load_pixels(p, (224, 224)) for p in paths])
    predict = get_predictor(spec)
    predict(pixels[:BATCH])
    out = []

    def run() -> None:
        out.clear()
        out.extend(predict(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH))

    timing = best_of(repeats, run)
    np.save(WORK / f"model-{engine}.npy", np.concatenate(out))
    return {"images": len(paths)} | timing


def variant_flow() -> dict:
    from flows.predict_batch import predict_batch

    started = time.perf_counter()
    result = predict_batch(
        params={
            "inputs": [str(WORK / "imagenet-samples")],
            "weights": "none",
            "data_dir": str(WORK / "data"),
            "run_id": "bench-flow",
        }
    )
    wall = time.perf_counter() - started
    return {"images": result.images, "seconds": result.seconds, "wall_with_server": wall}


def copies(n: int) -> Path:
    """The photos n times over (hard links under new names: the flow predicts each file once)."""
    folder = WORK / f"imagenet-samples-x{n}"
    if not folder.is_dir():
        for k in range(n):
            (folder / str(k)).mkdir(parents=True)
            for p in photos():
                os.link(p, folder / str(k) / Path(p).name)
    return folder


def variant_ov_flow(precision: str, n: int) -> dict:
    """The whole flow (JPEG files -> Parquet) with OpenVINO, twice in one process: the first run
    loads the cached IR and compiles it, the second is a warm worker's steady state."""
    from flows.predict_batch import predict_batch

    params = {
        "inputs": [str(copies(n))], "weights": "none", "data_dir": str(WORK / "data"),
        "run_id": f"bench-ov-flow-{precision}", "backend": "openvino", "precision": precision,
        "calibration_size": 200, "max_accuracy_drop": 100,
    }  # fmt: skip
    _spec(f"ov-{precision}")  # the IR exists before the timed runs (as after any earlier run)
    first = predict_batch(params=params)
    cpu = time.process_time()
    second = predict_batch(params=params)
    return {
        "images": second.images,
        "seconds": second.seconds,
        "cpu_seconds": time.process_time() - cpu,
        "first_seconds": first.seconds,
    }


def variant_features(mixed: bool) -> dict:
    """Real ImageNet features (MobileNet 0.25, no top, avg pooled) for the bf16 agreement."""
    import keras
    import numpy as np

    from tasks.predict.images import load_pixels
    from tasks.runtime import dtype_policy as _policy

    with _policy("mixed_bfloat16" if mixed else None):
        model = keras.applications.MobileNet(
            alpha=0.25,
            input_shape=(224, 224, 3),
            include_top=False,
            weights=str(MOBILENET_NOTOP),
            pooling="avg",
        )
    x = np.stack([load_pixels(p, (224, 224)) for p in photos()])
    x = keras.applications.mobilenet.preprocess_input(x)
    features = np.asarray(model.predict(x, batch_size=BATCH, verbose=0), dtype=np.float32)
    np.save(WORK / f"features-{'bf16' if mixed else 'fp32'}.npy", features)
    return {"images": len(x)}


def variant_tflite() -> dict:
    from tasks.predict.spec import resolve_model
    from tasks.predict.tasks import Decoding, predict_images

    paths, spec = photos(), resolve_model(str(TFLITE))
    started = time.perf_counter()
    rows = [
        r
        for batch in predict_images(
            paths, spec, batch_size=BATCH, run_id="bench", decoding=Decoding(top_k=5)
        )
        for r in batch
    ]
    seconds = time.perf_counter() - started
    top1 = top5 = 0
    for path in paths:
        truth = Path(path).name.split("_")[0]  # n01440764_tench.JPEG
        ranked = [spec.labels.wnids[r["label_index"]] for r in rows if r["image"] == path]
        top1 += ranked[0] == truth
        top5 += truth in ranked
    return {"images": len(paths), "seconds": seconds, "top1": top1, "top5": top5}


VARIANTS = {
    "classic": lambda a: variant_classic(a.classic, a.repeats),
    "pipeline-fp32": lambda a: variant_pipeline("fp32", a.repeats),
    "pipeline-bf16": lambda a: variant_pipeline("bf16", a.repeats),
    "model-fp32": lambda a: variant_model("fp32", a.repeats),
    "model-bf16": lambda a: variant_model("bf16", a.repeats),
    "flow-fp32": lambda a: variant_flow(),
    "features-fp32": lambda a: variant_features(False),
    "features-bf16": lambda a: variant_features(True),
    "tflite": lambda a: variant_tflite(),
    # OpenVINO (the `openvino` extra): bare model, task path, whole flow; fp32 converts the IR.
    "ov-model-fp32": lambda a: variant_model("ov-fp32", a.repeats),
    "ov-model-bf16": lambda a: variant_model("ov-bf16", a.repeats),
    "ov-model-int8": lambda a: variant_model("ov-int8", a.repeats),
    "ov-pipeline-bf16": lambda a: variant_pipeline("ov-bf16", a.repeats),
    "ov-flow-bf16": lambda a: variant_ov_flow("bf16", a.copies),
    "ov-pipeline-int8": lambda a: variant_pipeline("ov-int8", a.repeats),
    "ov-flow-int8": lambda a: variant_ov_flow("int8", a.copies),
}


# ---- the driver ---------------------------------------------------------------------------------


def run_variant(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--variant", name]
    command += ["--classic", str(args.classic), "--repeats", str(args.repeats)]
    command += ["--copies", str(args.copies)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"variant {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ov_agreement() -> dict:
    """OpenVINO fp32 against Keras fp32 (same pixels); bf16 and int8 against OpenVINO fp32."""
    import numpy as np

    out = {}
    if (WORK / "model-ov-fp32.npy").is_file() and (WORK / "model-fp32.npy").is_file():
        ov = np.load(WORK / "model-ov-fp32.npy")
        out["ov_fp32_vs_keras_max_abs"] = float(np.abs(ov - np.load(WORK / "model-fp32.npy")).max())
    for p in ("bf16", "int8"):
        if (WORK / f"model-ov-{p}.npy").is_file() and (WORK / "model-ov-fp32.npy").is_file():
            a, b = np.load(WORK / "model-ov-fp32.npy"), np.load(WORK / f"model-ov-{p}.npy")
            out[f"ov_{p}_top1_vs_fp32"] = float((a.argmax(1) == b.argmax(1)).mean())
    return out


def agreement() -> dict:
    import numpy as np

    if not all((WORK / f).is_file() for f in ("model-fp32.npy", "model-bf16.npy", "classic.npy")):
        return ov_agreement()
    if not (WORK / "features-bf16.npy").is_file():
        return ov_agreement()
    fp32, bf16 = np.load(WORK / "model-fp32.npy"), np.load(WORK / "model-bf16.npy")
    classic = np.load(WORK / "classic.npy")
    top5_same = [
        set(np.argsort(-a)[:5]) == set(np.argsort(-b)[:5]) for a, b in zip(fp32, bf16, strict=True)
    ]
    f32, f16 = np.load(WORK / "features-fp32.npy"), np.load(WORK / "features-bf16.npy")
    cos = (f32 * f16).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(f16, axis=1)

    def nearest(f: np.ndarray) -> np.ndarray:
        unit = f / np.linalg.norm(f, axis=1, keepdims=True)
        sim = unit @ unit.T
        np.fill_diagonal(sim, -2)
        return sim.argmax(1)

    return {
        "classic_vs_ours_max_abs": float(np.abs(classic - fp32[: len(classic)]).max()),
        "resnet_top1": float((fp32.argmax(1) == bf16.argmax(1)).mean()),
        "resnet_top5_set": float(np.mean(top5_same)),
        "resnet_max_abs": float(np.abs(fp32 - bf16).max()),
        "features_cos_mean": float(cos.mean()),
        "features_cos_min": float(cos.min()),
        "features_nn_same": float((nearest(f32) == nearest(f16)).mean()),
    } | ov_agreement()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--classic", type=int, default=64, help="images for the per-image loop")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes (best is kept)")
    parser.add_argument("--no-flow", action="store_true", help="skip the Prefect flow run")
    parser.add_argument("--only", default="", help="comma-separated variant name prefixes")
    parser.add_argument("--copies", type=int, default=3, help="photo copies in the OpenVINO flow")
    args = parser.parse_args()
    if args.variant:
        result = VARIANTS[args.variant](args) | {"peak_rss_mb": peak_rss_mb()}
        print(json.dumps(result))
        return
    photos()
    names = [n for n in VARIANTS if not (args.no_flow and "flow" in n)]
    if args.only:
        names = [n for n in names if n.startswith(tuple(args.only.split(",")))]
    if not _openvino_installed():
        print(
            "OpenVINO not installed: no ov-* rows (pip install -e '.[openvino]')", file=sys.stderr
        )
        names = [n for n in names if not n.startswith("ov-")]
    results = {}
    for name in names:
        results[name] = run_variant(name, args)
        print(f"  {name}: {results[name]}", file=sys.stderr, flush=True)
    report(results, agreement())


def _openvino_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


if __name__ == "__main__":
    main()
