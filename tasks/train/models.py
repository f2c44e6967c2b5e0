"""Model factories (cifar_cnn, small_cnn, resnet50_transfer, mobilenet_transfer); their ImageNet
weights are resolved before TensorFlow loads, in tasks.train.spec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import layers

from storage.errors import ConfigError
from tasks.train.settings import MODELS, check_image_size

DEFAULT_OPTIMIZER = {
    "cifar_cnn": ("adam", 1e-3),
    "small_cnn": ("nadam", 1e-3),
    "resnet50_transfer": ("adam", 1e-3),
    "mobilenet_transfer": ("adam", 1e-3),
}


def _head(x, num_classes: int):
    """1 sigmoid unit for two classes (binary labels), else a softmax; float32 even under
    mixed precision so probabilities and the loss stay accurate."""
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", dtype="float32", name="head")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="head")(x)


def cifar_cnn(input_shape: tuple[int, int, int], num_classes: int, **_: Any) -> keras.Model:
    """The classic 3-conv CIFAR-10 net; takes raw 0..255 pixels."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, _head(x, num_classes), name="cifar_cnn")


def small_cnn(input_shape: tuple[int, int, int], num_classes: int, **_: Any) -> keras.Model:
    """3 convs, Dense 64 (small normal init) and Dropout 0.2: the classic binary-task net."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    init = keras.initializers.RandomNormal(stddev=0.01)
    x = layers.Dense(64, activation="relu", kernel_initializer=init, bias_initializer="zeros")(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(inputs, _head(x, num_classes), name="small_cnn")


def caffe_preprocess(name: str = "preprocess") -> layers.Layer:
    """ResNet50's preprocess_input ("caffe": RGB->BGR, minus the ImageNet channel means) as a
    frozen 1x1 convolution, a built-in layer, so best.keras loads without custom code."""
    kernel = np.zeros((1, 1, 3, 3), "float32")
    for rgb, bgr in ((0, 2), (1, 1), (2, 0)):
        kernel[0, 0, rgb, bgr] = 1.0
    bias = -np.array([103.939, 116.779, 123.68], "float32")
    conv = layers.Conv2D(3, 1, name=name, trainable=False, dtype="float32")
    conv.build((None, None, None, 3))
    conv.set_weights([kernel, bias])
    return conv


def _transfer(backbone, preprocess, x_inputs, num_classes: int, name: str) -> keras.Model:
    backbone.trainable = False
    x = preprocess(x_inputs)
    # training=False keeps BatchNorm in inference mode even when top layers are unfrozen.
    x = backbone(x, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(1024, activation="relu")(x)
    return keras.Model(x_inputs, _head(x, num_classes), name=name)


def resnet50_transfer(
    input_shape: tuple[int, int, int], num_classes: int, weights: str | None = None, **_: Any
) -> keras.Model:
    """Frozen ResNet50 (no top) -> GlobalAveragePooling2D -> Dense 1024 relu -> head."""
    inputs = keras.Input(input_shape, name="image")
    base = keras.applications.ResNet50(include_top=False, weights=weights, input_shape=input_shape)
    return _transfer(base, caffe_preprocess(), inputs, num_classes, "resnet50_transfer")


def mobilenet_transfer(
    input_shape: tuple[int, int, int],
    num_classes: int,
    weights: str | None = None,
    alpha: float = 0.25,
    **_: Any,
) -> keras.Model:
    """Frozen MobileNet (width `alpha`, no top) -> GAP -> Dense 1024 relu -> head."""
    inputs = keras.Input(input_shape, name="image")
    base = keras.applications.MobileNet(
        include_top=False, weights=weights, input_shape=input_shape, alpha=alpha
    )
    # MobileNet's preprocess_input ("tf" mode) is x / 127.5 - 1.
    preprocess = layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")
    return _transfer(base, preprocess, inputs, num_classes, "mobilenet_transfer")


FACTORIES: dict[str, Callable[..., keras.Model]] = {
    "cifar_cnn": cifar_cnn,
    "small_cnn": small_cnn,
    "resnet50_transfer": resnet50_transfer,
    "mobilenet_transfer": mobilenet_transfer,
}


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    weights: str | None = None,
    alpha: float = 0.25,
    optimizer: str | None = None,
    learning_rate: float | None = None,
) -> keras.Model:
    """Build and compile a model by name; optimizer and learning rate follow the model unless
    overridden. `weights` must already be resolved (tasks.train.spec.resolve_weights)."""
    if name not in FACTORIES:
        raise ConfigError(f"unknown model {name!r}; models are: {', '.join(MODELS)}")
    check_image_size(name, input_shape[:2])
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    model = FACTORIES[name](input_shape, num_classes, weights=weights, alpha=alpha)
    compile_model(model, name, num_classes, optimizer, learning_rate)
    return model


def compile_model(
    model: keras.Model,
    name: str,
    num_classes: int,
    optimizer: str | None = None,
    learning_rate: float | None = None,
) -> None:
    default_optimizer, default_lr = DEFAULT_OPTIMIZER[name]
    optimizers = {
        "adam": keras.optimizers.Adam,
        "nadam": keras.optimizers.Nadam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    opt = optimizers[optimizer or default_optimizer](learning_rate=learning_rate or default_lr)
    loss = (
        keras.losses.BinaryCrossentropy()
        if num_classes == 2
        else keras.losses.SparseCategoricalCrossentropy()
    )
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])


def unfreeze_top(model: keras.Model, count: int) -> int:
    """Make the top `count` layers of the backbone trainable (BatchNorm stays frozen, as the
    Keras transfer-learning guide advises); returns how many layers were unfrozen."""
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    backbone.trainable = True
    candidates = [layer for layer in backbone.layers if layer.weights]
    chosen = set(map(id, candidates[-count:])) if count else set()
    for layer in backbone.layers:
        is_bn = isinstance(layer, layers.BatchNormalization)
        layer.trainable = id(layer) in chosen and not is_bn
    return sum(1 for layer in backbone.layers if layer.trainable)
