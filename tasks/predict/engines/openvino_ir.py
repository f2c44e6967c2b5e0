"""The IR an OpenVINO prediction run uses: the fp32 conversion (cached), or int8 by NNCF
post-training quantization on a few hundred images, with validation accuracy of fp32 and int8
side by side for trained models (int8 is refused when it loses too much)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from storage.errors import ConfigError
from storage.model_card import ModelCard
from tasks.predict.engines.openvino import (
    IR_FILE,
    META_FILE,
    NO_CHECK,
    OpenVinoInfo,
    Precision,
    async_predictor,
    cache_dir,
    check_accuracy,
    compile_ir,
    describe,
    fp32_ir,
    hint,
    openvino_spec,
    ov_module,
    write_ir,
)
from tasks.predict.images import OK, image_batches
from tasks.predict.inputs import images_in
from tasks.predict.spec import ModelSpec, Predict, resolve_model
from tasks.runtime import evenly_spaced, logger


def spread(paths: list[str], n: int) -> list[str]:
    """n paths evenly spaced over the list (every class of a sorted split is represented)."""
    return evenly_spaced(paths, n)


def pixels(spec: ModelSpec, paths: list[str], batch_size: int = 32):
    """(pixels of the readable images, which paths were readable), decoded as the flow does."""
    xs, ok = [], []
    for x, status, _ in image_batches(paths, spec.image_size, batch_size, spec.preprocessing):
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


def trained_splits(spec: ModelSpec) -> dict[str, list[str]] | None:
    """A trained model's dataset as it trained: {"train": [...], "val": [...]} image paths.

    The val/ folder, or else the held-out share of train/ that train_classifier's seeded
    validation_split took (listed by Keras exactly as training listed it).
    """
    if spec.kind != "keras":
        return None
    card = ModelCard.read(spec.path)
    dataset = Path(card.dataset_dir or "/nonexistent")
    if not (dataset / "train").is_dir():
        return None
    if (dataset / "val").is_dir():
        return {"train": images_in(dataset / "train"), "val": images_in(dataset / "val")}
    params = card.params or {}
    share = float(params.get("validation_split") or 0)
    if not 0 < share < 1:
        return {"train": images_in(dataset / "train"), "val": []}
    import keras

    train, val = keras.utils.image_dataset_from_directory(
        dataset / "train",
        class_names=list(spec.labels.names),
        image_size=spec.image_size,
        batch_size=None,
        shuffle=True,
        seed=params.get("seed", 42),
        validation_split=share,
        subset="both",
        verbose=False,
    )
    return {"train": sorted(train.file_paths), "val": sorted(val.file_paths)}


def check_validation_split(spec: ModelSpec, max_accuracy_drop: float | None) -> None:
    """A trained model's int8 is checked on its validation images: they must be there."""
    if spec.kind != "keras" or max_accuracy_drop is None or max_accuracy_drop >= NO_CHECK:
        return
    splits = trained_splits(spec)
    if not splits or not splits["val"]:
        raise ConfigError(
            "int8 is checked against fp32 on the training dataset's validation images, and"
            f" the model card of {spec.path} leads to none (its dataset_dir, with val/ or a"
            " validation_split): restore the dataset, or pass --max-accuracy-drop 100 to"
            " quantize without the check"
        )


def truth(spec: ModelSpec, paths: list[str]) -> np.ndarray:
    """Class index of each image from its <class>/ folder name."""
    index = {name: i for i, name in enumerate(spec.labels.names)}
    return np.array([index.get(Path(p).parent.name, -1) for p in paths], dtype=int)


def calibration_source(spec: ModelSpec, images: list[str]) -> tuple[list[str], str]:
    """A trained model calibrates on its training images; a backbone on the run's inputs."""
    splits = trained_splits(spec)
    if splits and splits["train"]:
        return splits["train"], f"{Path(splits['train'][0]).parents[1]} (training images)"
    return images, "the run's inputs"


def quantize(fp32_path: Path, calibration: np.ndarray):
    """NNCF post-training quantization of the fp32 IR on these calibration pixels."""
    import nncf

    model = ov_module().Core().read_model(str(fp32_path))
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
    write_ir(quantized, folder, meta, "int8")
    info.seconds = time.perf_counter() - started
    return info


def _compare(spec, fp32_path, quantized, info: OpenVinoInfo, threshold: float, batch: int) -> None:
    """Trained model: validation accuracy fp32 vs int8. Backbone: nothing labeled to check."""
    splits = trained_splits(spec)
    if not splits or not splits["val"]:
        return
    x, readable = pixels(spec, splits["val"], batch)
    labels = truth(spec, splits["val"])[readable]
    softmax = spec.kind == "backbone"
    fp32 = async_predictor(compile_ir(fp32_path, "fp32"), softmax)
    int8 = async_predictor(compile_ir(quantized, "int8"), softmax)
    acc = {
        name: float(np.mean(predictions(p, x, spec.binary, threshold, batch) == labels))
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


@task(name="prepare-openvino", cache_policy=NO_CACHE)
def prepare_openvino(
    spec: ModelSpec,
    precision: Precision,
    *,
    images: list[str],
    calibration_size: int = 300,
    max_accuracy_drop: float | None = 0.5,
    threshold: float = 0.5,
    batch_size: int = 32,
) -> tuple[ModelSpec, OpenVinoInfo]:
    """Convert (or reuse) the IR for `precision`; for int8, quantize and check accuracy.

    Raises AccuracyDropError (nothing predicted) when int8 loses more than
    `max_accuracy_drop` points of validation accuracy against fp32.
    """
    hint(precision)  # a CPU without bf16 refuses precision=bf16 before converting anything
    if precision == "int8":
        check_validation_split(spec, max_accuracy_drop)
    fp32_path, cached, seconds = fp32_ir(spec)
    if precision != "int8":
        info = OpenVinoInfo(
            ir_path=str(fp32_path), precision=precision, cached=cached, seconds=round(seconds, 2)
        )
    else:
        info = int8_ir(
            spec,
            fp32_path,
            images=images,
            calibration_size=calibration_size,
            threshold=threshold,
            batch_size=batch_size,
        )
        info.seconds = round(info.seconds + seconds, 2)
    logger().info("OpenVINO %s: %s", precision, describe(info))
    check_accuracy(info, max_accuracy_drop)
    return openvino_spec(spec, precision, Path(info.ir_path)), info


def export_openvino(model_path: str) -> dict:
    """train_classifier's export: the fp32 IR of best.keras in the cache predict reads, so a
    later `predict --backend openvino` loads it without converting (bf16 runs from it too)."""
    path, cached, _ = fp32_ir(resolve_model(model_path))
    version = ov_module().__version__.split("-")[0]
    return {"path": str(path), "precision": "fp32", "openvino": version, "reused": cached}
