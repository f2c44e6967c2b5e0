"""int8 for the OpenVINO backend: NNCF post-training quantization calibrated on a few hundred
images, and validation accuracy of fp32 vs int8 side by side for trained models."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from storage.errors import ConfigError
from tasks.infer import OK, image_batches, images_in
from tasks.openvino_backend import (
    IR_FILE,
    META_FILE,
    OpenVinoInfo,
    _ov,
    _write_ir,
    async_predictor,
    cache_dir,
    compile_ir,
    trained_dataset,
)
from tasks.predictors import ModelSpec, Predict
from tasks.runtime import logger


def spread(paths: list[str], n: int) -> list[str]:
    """n paths evenly spaced over the list (every class of a sorted split is represented)."""
    if len(paths) <= n:
        return list(paths)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, n).round().astype(int)]


def pixels(spec: ModelSpec, paths: list[str], batch_size: int = 32):
    """(pixels of the readable images, which paths were readable), decoded as the flow does."""
    xs, ok = [], []
    for x, status, _ in image_batches(paths, spec.image_size, batch_size, spec.interpolation):
        readable = status.numpy() == OK
        xs.append(x.numpy()[readable])
        ok.append(readable)
    if not xs:
        return np.zeros((0, *spec.image_size, 3), np.float32), np.zeros(0, bool)
    return np.concatenate(xs), np.concatenate(ok)


def predictions(predict: Predict, x: np.ndarray, binary: bool, threshold: float, batch: int):
    """Class index per image: argmax, or the threshold on a sigmoid output."""
    p = np.concatenate([predict(x[i : i + batch]) for i in range(0, len(x), batch)])
    return (p[:, 0] >= threshold).astype(int) if binary else p.argmax(axis=1)


def labeled(spec: ModelSpec, split: Path) -> tuple[list[str], np.ndarray]:
    """Images of a <class>/<image> split with their class index (classes the model knows)."""
    index = {name: i for i, name in enumerate(spec.labels.names)}
    paths = [p for p in images_in(split) if Path(p).parent.name in index]
    return paths, np.array([index[Path(p).parent.name] for p in paths], dtype=int)


def calibration_source(spec: ModelSpec, images: list[str]) -> tuple[list[str], str]:
    """A trained model calibrates on its dataset's train split; a backbone on the run's inputs."""
    dataset = trained_dataset(spec)
    if dataset is not None and (dataset / "train").is_dir():
        return images_in(dataset / "train"), f"{dataset / 'train'}"
    return images, "the run's inputs"


def quantize(fp32_path: Path, calibration: np.ndarray):
    """NNCF post-training quantization of the fp32 IR on these calibration pixels."""
    import nncf

    model = _ov().Core().read_model(str(fp32_path))
    items = [calibration[i : i + 1] for i in range(len(calibration))]
    return nncf.quantize(model, nncf.Dataset(items), subset_size=len(items))


def int8_ir(
    spec: ModelSpec,
    fp32_path: Path,
    *,
    images: list[str],
    calibration_size: int,
    threshold: float,
    batch_size: int,
) -> OpenVinoInfo:
    """The cached int8 IR, or quantize now: calibration, accuracy check data, IR + meta.json."""
    folder = cache_dir(spec, "int8", calibration_size)
    if (folder / IR_FILE).is_file() and (folder / META_FILE).is_file():
        meta = json.loads((folder / META_FILE).read_text())
        info = OpenVinoInfo(**meta["info"], cached=True, seconds=0.0)
        if info.accuracy_int8 is None:  # quantized when the val split was missing: check now
            _compare(spec, fp32_path, folder / IR_FILE, info, threshold, batch_size)
        return info
    started = time.perf_counter()
    paths, source = calibration_source(spec, images)
    calibration, _ = pixels(spec, spread(paths, calibration_size), batch_size)
    if not len(calibration):
        raise ConfigError(f"no readable calibration images in {source}")
    logger().info(
        "quantizing %s to int8 on %d images of %s", spec.identity, len(calibration), source
    )
    quantized = quantize(fp32_path, calibration)
    info = OpenVinoInfo(
        ir_path=str(folder / IR_FILE),
        precision="int8",
        cached=False,
        seconds=0.0,
        calibration=source,
        calibration_images=len(calibration),
    )
    _compare(spec, fp32_path, quantized, info, threshold, batch_size)
    stored = info.model_dump(exclude={"cached", "seconds"})
    meta = {"model": spec.identity, "precision": "int8", "info": stored}
    _write_ir(quantized, folder, meta, "int8")
    info.seconds = time.perf_counter() - started
    return info


def _compare(spec, fp32_path, quantized, info: OpenVinoInfo, threshold: float, batch: int) -> None:
    """Trained model: validation accuracy fp32 vs int8. Backbone: nothing labeled to check."""
    dataset = trained_dataset(spec)
    if dataset is None or not (dataset / "val").is_dir():
        return
    paths, truth = labeled(spec, dataset / "val")
    if not paths:
        return
    x, readable = pixels(spec, paths, batch)
    truth = truth[readable]
    softmax = spec.kind == "backbone"
    fp32 = async_predictor(compile_ir(fp32_path, "fp32"), softmax)
    int8 = async_predictor(compile_ir(quantized, "int8"), softmax)
    acc = {
        name: float(np.mean(predictions(p, x, spec.binary, threshold, batch) == truth))
        for name, p in (("fp32", fp32), ("int8", int8))
    }
    info.accuracy_fp32, info.accuracy_int8 = round(acc["fp32"], 6), round(acc["int8"], 6)
    info.accuracy_drop_points = round(100 * (acc["fp32"] - acc["int8"]), 4)
    info.validation_images = len(x)
    logger().info(
        "validation accuracy on %d images: fp32 %.4f, int8 %.4f (drop %.2f points)",
        len(x),
        acc["fp32"],
        acc["int8"],
        info.accuracy_drop_points,
    )
