"""TFLite image classifiers: the interpreter, batched when the graph allows, and its
quantized inputs and outputs mapped to raw pixels in and float32 probabilities out."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import numpy as np

from storage.errors import ConfigError
from tasks.predict.labels import softmax_rows


def interpreter(path: str | os.PathLike[str]):
    """A TFLite interpreter on all cores (LiteRT's when installed)."""
    try:  # LiteRT is TFLite's successor; TensorFlow's own interpreter still works in 2.21
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        try:
            return Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
        except ValueError as e:
            raise ConfigError(f"{path} is not a TFLite model: {e}") from e


def load_tflite(path: str, label_offset: int = 0) -> Callable[[object], np.ndarray]:
    """A predict function: whole batches when the graph resizes, else one image per invoke."""
    engine = interpreter(path)
    inp, out = engine.get_input_details()[0], engine.get_output_details()[0]
    state = {"batch": None, "fixed": False}

    def invoke(x: np.ndarray) -> np.ndarray:
        if state["batch"] != len(x):
            engine.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:]])
            engine.allocate_tensors()
            state["batch"] = len(x)
        engine.set_tensor(inp["index"], x)
        engine.invoke()
        return engine.get_tensor(out["index"])

    def predict(batch) -> np.ndarray:
        x = tflite_input(np.asarray(batch, dtype=np.float32), inp["dtype"])
        if not state["fixed"]:
            try:
                return tflite_probabilities(invoke(x), out, label_offset)
            except (RuntimeError, ValueError):  # a graph fixed to batch 1 (e.g. XNNPACK)
                state["fixed"], state["batch"] = True, None
        y = np.concatenate([invoke(x[i : i + 1]) for i in range(len(x))])
        return tflite_probabilities(y, out, label_offset)

    return predict


def tflite_input(pixels: np.ndarray, dtype: type) -> np.ndarray:
    """Raw pixels in the file's input type: uint8 as is, int8 shifted by 128, float as 0-255.

    Quantized image classifiers take raw pixels (the normalization is folded into the
    input's scale and zero point); float inputs get what pixelpipe's Keras models take.
    """
    if dtype == np.uint8:
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    if dtype == np.int8:
        return (np.clip(np.rint(pixels), 0, 255) - 128).astype(np.int8)
    return pixels.astype(dtype)


def tflite_probabilities(y: np.ndarray, out: dict, offset: int) -> np.ndarray:
    """Dequantized float32 probabilities, without the leading background class if any."""
    scale, zero = out["quantization"]
    y = (y.astype(np.float32) - zero) * scale if scale else y.astype(np.float32)
    y = y.reshape(len(y), -1)
    # Probabilities already (softmax inside) when none is negative and no row sums above 1;
    # quantized ones sum to less (small values round to 0: 0.74-0.98 for the shared file).
    if y.min() < 0 or y.sum(axis=-1).max() > 1.05:
        y = softmax_rows(y)
    return y[:, offset:]
