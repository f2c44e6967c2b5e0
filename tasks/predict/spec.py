"""The model of a prediction run: resolved and checked up front, then loaded once per process.

Three kinds: a Keras ImageNet backbone by name (weights "imagenet" from the Keras cache, a local
file, or random), a trained `best.keras` with its `model_card.json`, and a `.tflite` classifier.
Every predictor maps a batch of raw 0-255 RGB pixels (n, h, w, 3) to float32 probabilities;
each spec carries the preprocessing that makes those pixels (tasks/predict/preprocess.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from storage.champions import champion_model
from storage.errors import ConfigError
from storage.layout import Layout
from storage.model_card import ModelCard, model_file
from tasks import weights as keras_weights
from tasks.keras_compat import BACKBONES
from tasks.predict.engines import tflite
from tasks.predict.labels import Labels, imagenet_labels
from tasks.predict.preprocess import Preprocessing, imagenet_standard
from tasks.weights import file_digest

Kind = Literal["backbone", "keras", "tflite"]
RANDOM_SEED = 0  # weights=None is seeded, so "random weights" are the same in every run


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to load a model anywhere; hashable, so it keys the per-process cache."""

    kind: Kind
    name: str
    path: str | None  # the model file; for a backbone its weights file (None: random)
    identity: str  # the `model` column: name plus weights hash or path
    labels: Labels
    image_size: tuple[int, int]  # (height, width)
    # How pixels are made: ImageNet models get the standard protocol, trained models their card's.
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    binary: bool = False  # one sigmoid output: class 1 when p >= threshold
    label_offset: int = 0  # TFLite with 1,001 outputs: index 0 is "background"
    mixed_precision: bool = False
    # backend="openvino": shards run the converted IR (engines/openvino_ir.py) at `precision`.
    backend: str = "keras"
    precision: str = "fp32"
    ir_path: str | None = None
    model_run: str | None = None  # the train run of a trained model (the `model_run` column)


def resolve_model(
    model: str,
    weights: str | None = "imagenet",
    *,
    data_dir: str | None = None,
    mixed_precision: bool = False,
    resize_mode: str | None = None,
    interpolation: str | None = None,
    crop_fraction: float | None = None,
    weights_option: str = "--weights",
) -> ModelSpec:
    """Check a model choice against the disk and return its spec; raise before any work.

    `model`: a backbone name, a `.keras` file (or its folder, or a train run id under
    models/), a `.tflite` file, or a dataset's champion (`champion:<dataset>`, or `champion`
    when one dataset has one). The resize overrides replace the model's own choice.
    `weights_option`: the caller's option for `weights`, named when the weights are missing.
    """
    spec = _resolve(model, weights, data_dir, mixed_precision, weights_option)
    prep = spec.preprocessing.with_overrides(resize_mode, interpolation, crop_fraction)
    return replace(spec, preprocessing=prep)


def _resolve(
    model: str, weights: str | None, data_dir: str | None, mixed_precision: bool, option: str
) -> ModelSpec:
    champion = champion_model(model, data_dir)
    if champion is not None:
        if file_digest(Path(champion.model_path)) != champion.sha256:
            raise ConfigError(
                f"{champion.model_path} changed since it became the champion of"
                f" {champion.dataset!r} (sha256 differs): promote or roll back again"
            )
        model = champion.model_path
    if model in BACKBONES:
        return _backbone_spec(model, weights, mixed_precision, option)
    path = model_location(model, data_dir) or Path(model).expanduser()
    if path.is_dir():
        path = model_file(path)
    path = path.resolve()
    if mixed_precision and path.suffix in {".tflite", ".keras", ".h5"}:
        raise ConfigError("mixed_precision applies to ImageNet backbones only; drop it")
    if path.suffix == ".tflite" and path.is_file():
        return _tflite_spec(path)
    if path.suffix in {".keras", ".h5"} and path.is_file():
        return _trained_spec(path)
    raise ConfigError(
        f"model {model!r} is neither a backbone ({', '.join(BACKBONES)}) nor an existing"
        " .keras/.tflite file, model folder or train run id"
    )


def model_location(model: str, data_dir: str | None = None) -> Path | None:
    """The file or folder a model reference opens, found without opening it: a champion's
    model (its pointer checked: storage/champions.py), a path, or a train run's folder under
    models/; None for a backbone name, or a bare name that is nothing on disk (which
    resolve_model then refuses). The served-run policy judges what this returns."""
    champion = champion_model(model, data_dir)
    if champion is not None:
        return Path(champion.model_path)
    if model in BACKBONES:
        return None
    path = Path(model).expanduser()
    if path.exists() or "/" in model:
        return path
    run_dir = Layout.at(data_dir).root / "models" / model
    return run_dir if run_dir.is_dir() else None


def _backbone_spec(name: str, weights: str | None, mixed_precision: bool, option: str) -> ModelSpec:
    b = BACKBONES[name]
    choice = (weights or "none").strip()
    if choice.lower() in {"none", "null", "random", ""}:
        path, identity = None, f"{name}@random(seed={RANDOM_SEED})"
    elif choice == "imagenet":
        weights_file = imagenet_weights(name, option)
        path = str(weights_file)
        identity = f"{name}@imagenet:md5={b.md5 or file_digest(weights_file, 'md5')}"
    else:
        local = Path(choice).expanduser().resolve()
        if not local.is_file():
            raise keras_weights.missing_weights_file(local, option)
        path, identity = str(local), f"{name}@{local.as_posix()}:sha256={file_digest(local)[:12]}"
    return ModelSpec(
        kind="backbone",
        name=name,
        path=path,
        identity=identity + ("+mixed_bfloat16" if mixed_precision else ""),
        labels=imagenet_labels(),
        image_size=(b.size, b.size),
        preprocessing=imagenet_standard(f"keras.applications.{b.module}.preprocess_input"),
        mixed_precision=mixed_precision,
    )


def imagenet_weights(name: str, option: str = "--weights") -> Path:
    """The cached ImageNet weights file of a backbone, downloaded by Keras if missing."""
    b = BACKBONES[name]
    return keras_weights.imagenet_weights(name, b.file, b.origin + b.file, b.md5, option)


def _trained_spec(path: Path) -> ModelSpec:
    card = ModelCard.read(path)
    return ModelSpec(
        kind="keras",
        name=card.model or path.stem,
        path=str(path),
        identity=f"{card.model or 'keras'}@{path.as_posix()}:sha256={file_digest(path)[:12]}",
        labels=Labels(tuple(card.class_names)),
        image_size=card.image_size,
        preprocessing=Preprocessing(
            card.resize_mode, card.interpolation, card.crop_fraction, card.scaling
        ),
        binary=card.binary,
        model_run=card.run_id or path.parent.name,
    )


def _tflite_spec(path: Path) -> ModelSpec:
    interpreter = tflite.interpreter(path)
    shape = interpreter.get_input_details()[0]["shape"]
    outputs = int(interpreter.get_output_details()[0]["shape"][-1])
    if outputs in (1000, 1001):
        labels, offset = imagenet_labels(), outputs - 1000
        # An ImageNet classifier: evaluated (and trained) on the standard protocol.
        prep = imagenet_standard(_tflite_scaling(interpreter))
    else:
        card = ModelCard.read(path)
        labels, offset = Labels(tuple(card.class_names)), 0
        prep = Preprocessing(card.resize_mode, card.interpolation, card.crop_fraction, card.scaling)
        if len(labels) != outputs:
            raise ConfigError(f"{path}: {outputs} outputs but {len(labels)} class names")
    return ModelSpec(
        kind="tflite",
        name=path.stem,
        path=str(path),
        identity=f"tflite@{path.as_posix()}:sha256={file_digest(path)[:12]}",
        labels=labels,
        image_size=(int(shape[1]), int(shape[2])),
        preprocessing=prep,
        label_offset=offset,
    )


def _tflite_scaling(interpreter) -> str:
    """The input's quantization, which maps raw pixels to what the network takes."""
    inp = interpreter.get_input_details()[0]
    scale, zero = inp["quantization"]
    kind = np.dtype(inp["dtype"]).name
    return f"{kind} input, scale {scale:g} zero point {zero}" if scale else f"{kind} 0-255"


Predict = Callable[[object], np.ndarray]  # (n, h, w, 3) raw pixels -> (n, classes) float32
