"""OpenVINO backend of predict_batch: a Keras model converted once to IR (fp32, or int8 by NNCF),
cached beside the model, compiled for fp32/bf16/int8 and run through asynchronous requests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from storage.errors import AccuracyDropError, ConfigError
from tasks.predict.engines.keras import build_backbone, load_trained_model
from tasks.predict.labels import softmax_rows
from tasks.predict.spec import BACKBONES, ModelSpec, Predict
from tasks.runtime import logger
from tasks.weights import file_digest, keras_cache_dirs

Precision = Literal["fp32", "bf16", "int8"]
INSTALL = 'pip install -e ".[openvino]"'
RECIPE = 1  # bump when the conversion changes, so older cached IR is not reused
IR_FILE, META_FILE = "model.xml", "meta.json"
NO_CHECK = 100.0  # max_accuracy_drop at 100 points can never be exceeded: no check needed
CONVERSIONS: Counter[str] = Counter()  # IR files written by this process, by precision


class OpenVinoInfo(BaseModel):
    """What the flow reports about the engine: where the IR is, reused or built, and int8's
    validation accuracy against fp32 (trained models)."""

    ir_path: str
    precision: str
    cached: bool
    seconds: float  # conversion (+ quantization) time; 0 when cached
    calibration: str | None = None  # int8: where the calibration images came from
    calibration_images: int | None = None
    accuracy_fp32: float | None = None
    accuracy_int8: float | None = None
    accuracy_drop_points: float | None = None
    validation_images: int | None = None


def ov_module():
    try:
        import openvino as ov
    except ImportError as e:
        raise ConfigError(f"backend=openvino needs OpenVINO, not installed here: {INSTALL}") from e
    return ov


# ---- conversion ---------------------------------------------------------------------------------


def convert_keras(model, preprocess, size: tuple[int, int]):
    """An ov.Model taking raw 0-255 RGB pixels (n, h, w, 3): preprocessing is inside the graph."""
    import tensorflow as tf

    h, w = size

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32, name="pixels")])
    def serve(x):
        return tf.cast(model(preprocess(x), training=False), tf.float32)

    return ov_module().convert_model(serve)


def keras_source(spec: ModelSpec):
    """The Keras model of a spec and the preprocessing the Keras backend applies before it."""
    import keras

    if spec.kind == "backbone":
        model = build_backbone(spec.name, spec.path)  # logits; softmax after, in float32
        return model, getattr(keras.applications, BACKBONES[spec.name].module).preprocess_input
    return load_trained_model(spec), lambda x: x  # trained models rescale inside (train's contract)


def cache_root(spec: ModelSpec) -> Path:
    """Beside the model: a trained model's folder, or the Keras cache holding backbone weights."""
    if spec.kind == "keras":
        return Path(spec.path).parent / "openvino"
    return keras_cache_dirs()[0] / "openvino"


def cache_dir(spec: ModelSpec, ir_precision: str, calibration_size: int) -> Path:
    """One folder per (model bytes or backbone identity, IR precision, input shape, versions).

    bf16 shares the fp32 IR (bf16 is a compile-time hint); int8 is its own quantized IR.
    """
    source = f"sha256:{file_digest(spec.path)}" if spec.kind == "keras" else spec.identity
    parts = {
        "source": source,
        "precision": ir_precision,
        "input": [*spec.image_size, 3],
        "openvino": ov_module().__version__.split("-")[0],
        "recipe": RECIPE,
    }
    if ir_precision == "int8":
        parts["calibration_size"] = calibration_size
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    h, w = spec.image_size
    return cache_root(spec) / f"{spec.name}-{ir_precision}-{h}x{w}-{digest}"


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished IR folder into place; a concurrent run that got there first wins."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, final)
    except OSError:  # the folder exists (another process converted the same model)
        shutil.rmtree(tmp, ignore_errors=True)


def write_ir(ov_model, folder: Path, meta: dict, precision: str) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as the model beside it
    # compress_to_fp16=False: fp32 weights stay exact (OpenVINO equals Keras within 1e-4).
    ov_module().save_model(ov_model, tmp / IR_FILE, compress_to_fp16=False)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    _publish(tmp, folder)
    CONVERSIONS[precision] += 1


def fp32_ir(spec: ModelSpec) -> tuple[Path, bool, float]:
    """The fp32 IR of a spec, converted on first use: (xml path, reused, seconds spent)."""
    folder = cache_dir(spec, "fp32", 0)
    if (folder / IR_FILE).is_file():
        return folder / IR_FILE, True, 0.0
    started = time.perf_counter()
    model, preprocess = keras_source(spec)
    ov_model = convert_keras(model, preprocess, spec.image_size)
    meta = {"model": spec.identity, "precision": "fp32", "input": [*spec.image_size, 3]}
    write_ir(ov_model, folder, meta, "fp32")
    seconds = time.perf_counter() - started
    logger().info("converted %s to OpenVINO IR in %.1f s: %s", spec.identity, seconds, folder)
    return folder / IR_FILE, False, seconds


# ---- compiling and running ----------------------------------------------------------------------


def compile_ir(model, precision: str):
    """A CPU-compiled model (an IR file or an in-memory ov.Model); for a file, the compiled blob
    is cached beside it (CACHE_DIR), so later loads skip most of the compilation."""
    core = ov_module().Core()
    if isinstance(model, str | Path):
        core.set_property({"CACHE_DIR": str(Path(model).parent / "compiled")})
        model = str(model)
    config = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": hint(precision)}
    return core.compile_model(model, "CPU", config)


def cpu_has_bf16() -> bool:
    return "BF16" in ov_module().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def hint(precision: str) -> str:
    """OpenVINO's inference precision: what int8 leaves in float runs in bf16 where the CPU has
    it (as OpenVINO does by default; 2x faster than f32 here, and the accuracy check covers it)."""
    if precision == "fp32":
        return "f32"
    if precision == "bf16":
        if not cpu_has_bf16():
            raise ConfigError("this CPU has no bf16 support: use --precision fp32 or int8")
        return "bf16"
    return "bf16" if cpu_has_bf16() else "f32"


def async_predictor(compiled, softmax: bool) -> Predict:
    """Each batch split over the pool of asynchronous requests (one per CPU stream); the
    GIL is released while they run, so tf.data keeps decoding the next batch meanwhile."""
    ov = ov_module()
    queue = ov.AsyncInferQueue(compiled, 0)  # 0: the device's optimal number of requests
    outputs: dict[int, np.ndarray] = {}

    def done(request, i: int) -> None:
        outputs[i] = request.get_output_tensor(0).data.copy()

    queue.set_callback(done)

    def predict(batch) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
        chunks = np.array_split(x, max(1, min(len(queue), len(x))))
        outputs.clear()
        for i, chunk in enumerate(chunks):
            queue.start_async({0: chunk}, userdata=i)
        queue.wait_all()
        y = np.concatenate([outputs[i] for i in range(len(chunks))]).astype(np.float32)
        y = y.reshape(len(x), -1)
        return softmax_rows(y) if softmax else y

    return predict


def load_openvino(spec: ModelSpec) -> Predict:
    """get_predictor's loader for backend=openvino: compile the spec's IR for its precision."""
    if not spec.ir_path:
        raise ConfigError(f"{spec.identity}: no OpenVINO IR prepared (run prepare_openvino)")
    return async_predictor(compile_ir(spec.ir_path, spec.precision), spec.kind == "backbone")


def openvino_spec(spec: ModelSpec, precision: str, ir_path: Path) -> ModelSpec:
    """The spec shards run: same labels and sizes, the IR as engine, identity naming both."""
    return replace(
        spec,
        backend="openvino",
        precision=precision,
        ir_path=str(ir_path),
        identity=f"{spec.identity}+openvino-{precision}",
    )


def check_convertible(spec: ModelSpec, precision: str, mixed_precision: bool) -> None:
    if spec.kind == "tflite":
        raise ConfigError(
            "backend=openvino converts Keras models (an ImageNet backbone or a best.keras);"
            " a .tflite file runs on the TFLite interpreter: drop --backend openvino"
        )
    if mixed_precision:
        raise ConfigError("mixed_precision is the Keras backend's bf16: use --precision bf16")
    if precision == "int8":
        try:
            import nncf  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"precision=int8 needs NNCF, not installed here: {INSTALL}") from e


def describe(info: OpenVinoInfo) -> str:
    """One line for logs and the CLI: the IR, reused or built, and int8 accuracy side by side."""
    how = "cached IR" if info.cached else f"converted in {info.seconds:.1f} s"
    text = f"{how}, {info.ir_path}"
    if info.calibration_images:
        text += f"; calibrated on {info.calibration_images} images of {info.calibration}"
    if info.accuracy_int8 is not None:
        text += (
            f"; validation accuracy fp32 {info.accuracy_fp32:.4f} | int8 {info.accuracy_int8:.4f}"
            f" (drop {info.accuracy_drop_points:.2f} points, {info.validation_images} images)"
        )
    return text


def check_accuracy(info: OpenVinoInfo, max_accuracy_drop: float | None) -> None:
    """Refuse int8 when it loses more than allowed (stored numbers are re-checked each run)."""
    if max_accuracy_drop is None or info.accuracy_drop_points is None:
        return
    if info.accuracy_drop_points > max_accuracy_drop:
        raise AccuracyDropError(
            f"int8 validation accuracy {info.accuracy_int8:.4f} vs fp32 {info.accuracy_fp32:.4f}"
            f" on {info.validation_images} images: a drop of {info.accuracy_drop_points:.2f}"
            f" points, more than max_accuracy_drop={max_accuracy_drop}. No predictions written;"
            " use --precision bf16 (or fp32), more --calibration-size images, or allow a larger"
            " --max-accuracy-drop"
        )
