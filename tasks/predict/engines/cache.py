"""get_predictor: a spec's engine, loaded once per process and reused by every shard."""

from __future__ import annotations

from collections import OrderedDict

from storage.errors import ConfigError
from tasks.predict.engines import keras as keras_engine
from tasks.predict.engines import tflite
from tasks.predict.spec import ModelSpec, Predict

_LOADED: OrderedDict[ModelSpec, Predict] = OrderedDict()
_KEEP = 2  # models kept per process: a worker that switches models does not hoard them


def get_predictor(spec: ModelSpec) -> Predict:
    """The spec's predict function, loaded on first use and reused by every later shard."""
    if spec in _LOADED:
        _LOADED.move_to_end(spec)
        return _LOADED[spec]
    load = {
        "backbone": keras_engine.load_backbone,
        "keras": keras_engine.load_trained,
        "tflite": lambda spec: tflite.load_tflite(spec.path, spec.label_offset),
    }
    if spec.backend == "openvino":
        # deferred: OpenVINO is an optional extra (pip install -e ".[openvino]")
        from tasks.predict.engines.openvino import load_openvino as loader
    else:
        loader = load[spec.kind]
    try:
        predict = loader(spec)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot load model {spec.identity}: {e}") from e
    _LOADED[spec] = predict
    while len(_LOADED) > _KEEP:
        _LOADED.popitem(last=False)
    return predict
