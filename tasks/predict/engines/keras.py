"""The Keras engine: ImageNet backbones from keras.applications and trained `.keras` files,
compiled once into a tf.function that takes whole batches of raw pixels."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from storage.errors import ConfigError
from tasks.predict.spec import BACKBONES, RANDOM_SEED, ModelSpec, Predict
from tasks.runtime import dtype_policy


def _compiled(model, preprocess, h: int, w: int, softmax: bool) -> Predict:
    import tensorflow as tf

    # One traced graph for every batch size (the last batch is smaller); no retracing.
    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32)])
    def run(x):
        y = tf.cast(model(preprocess(x), training=False), tf.float32)
        # Softmax in float32 even when the model ran in bfloat16 (bf16 has 8 mantissa bits).
        return tf.nn.softmax(y, axis=-1) if softmax else y

    return lambda x: run(x).numpy()


def build_backbone(
    name: str,
    weights: str | None,
    *,
    mixed_precision: bool = False,
    classifier_activation: str | None = None,
):
    """The keras.applications model; weights=None gives the same random weights every time."""
    import keras

    with dtype_policy("mixed_bfloat16" if mixed_precision else None):
        model = getattr(keras.applications, BACKBONES[name].constructor)(
            weights=weights, classifier_activation=classifier_activation
        )
    if weights is None:
        reseed(model, RANDOM_SEED)
    return model


_SEEDED = (
    ("kernel", "kernel_initializer"),
    ("depthwise_kernel", "depthwise_initializer"),
    ("pointwise_kernel", "pointwise_initializer"),
    ("bias", "bias_initializer"),
)


def reseed(model, seed: int) -> None:
    """Redraw every randomly initialized variable from its own initializer with a fixed seed.

    keras.utils.set_random_seed is not enough: unseeded initializers take their seeds from
    Python's global `random`, which Prefect's background threads draw from too.
    """
    import keras

    n = 0
    for layer in all_layers(model):
        for var_name, init_name in _SEEDED:
            init = getattr(layer, init_name, None)
            var = getattr(layer, var_name, None)
            if not isinstance(init, keras.initializers.Initializer) or var is None:
                continue
            config = init.get_config()
            if "seed" in config:  # a random initializer (constants need no redraw)
                var.assign(
                    type(init).from_config(config | {"seed": seed + n})(var.shape, var.dtype)
                )
                n += 1


def all_layers(model) -> Iterator:
    """Every layer under a model, depth first, nested models' layers included (the order
    `keras.Model.layers` gives at each level)."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # a nested Model or Sequential
            yield from all_layers(layer)


def load_backbone(spec: ModelSpec) -> Predict:
    import keras

    # Logits out, softmax applied by us in float32 (same values as the softmax layer).
    model = build_backbone(spec.name, spec.path, mixed_precision=spec.mixed_precision)
    preprocess = getattr(keras.applications, BACKBONES[spec.name].module).preprocess_input
    return _compiled(model, preprocess, *spec.image_size, softmax=True)


def load_trained_model(spec: ModelSpec):
    """A trained `.keras` file, checked against its model card (every engine loads it here)."""
    import keras

    # A damaged .keras (not a zip, or one without its config) makes Keras say "File not
    # found" or worse; say what is wrong with the file instead.
    if spec.path.endswith(".keras") and not zipfile.is_zipfile(spec.path):
        raise ConfigError(f"{spec.path} is not a valid Keras model file (not a .keras archive)")
    try:
        model = keras.saving.load_model(spec.path, compile=False)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"{spec.path} is not a valid Keras model file ({reason})") from e
    outputs = int(model.outputs[0].shape[-1])
    expected = 1 if spec.binary else len(spec.labels)
    if outputs != expected:
        raise ConfigError(
            f"{spec.path} has {outputs} outputs but its model card says {expected}"
            f" ({len(spec.labels)} classes, {'binary' if spec.binary else 'categorical'})"
        )
    return model


def load_trained(spec: ModelSpec) -> Predict:
    # Trained models rescale inside (train_classifier's contract): they take raw pixels.
    return _compiled(load_trained_model(spec), lambda x: x, *spec.image_size, softmax=False)
