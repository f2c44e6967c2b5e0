"""Model factories, built-in preprocessing, and the weights that must exist before training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from storage.errors import ConfigError, WeightsNotFoundError
from tasks.train.models import build_model, caffe_preprocess, unfreeze_top
from tasks.train.spec import resolve_weights
from tasks.weights import keras_cache_dirs


@pytest.mark.parametrize(
    ("name", "classes", "units", "loss"),
    [
        ("cifar_cnn", 10, 10, "SparseCategoricalCrossentropy"),
        ("small_cnn", 2, 1, "BinaryCrossentropy"),
        ("mobilenet_transfer", 3, 3, "SparseCategoricalCrossentropy"),
    ],
)
def test_models_have_the_head_and_loss_their_classes_need(name, classes, units, loss):
    model = build_model(name, (32, 32, 3), classes)
    assert model.output_shape == (None, units)
    assert type(model.loss).__name__ == loss
    out = model.predict(np.full((2, 32, 32, 3), 128.0, "float32"), verbose=0)
    assert (
        np.allclose(out.sum(axis=1), 1.0, atol=1e-5) if units > 1 else ((out > 0) & (out < 1)).all()
    )


def test_layer_recipes_match_the_classic_nets():
    cifar = [type(x).__name__ for x in build_model("cifar_cnn", (32, 32, 3), 10).layers]
    assert cifar == [
        "InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
        "Conv2D", "Flatten", "Dense", "Dense",
    ]  # fmt: skip
    small = build_model("small_cnn", (32, 32, 3), 2)
    assert [type(x).__name__ for x in small.layers][-3:] == ["Dense", "Dropout", "Dense"]
    assert small.layers[-2].rate == 0.2
    assert type(small.optimizer).__name__ == "Nadam"
    overridden = build_model("small_cnn", (32, 32, 3), 2, optimizer="sgd", learning_rate=0.05)
    assert type(overridden.optimizer).__name__ == "SGD"
    assert float(overridden.optimizer.learning_rate) == pytest.approx(0.05)


def test_caffe_preprocess_layer_equals_resnet_preprocess_input():
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    assert np.allclose(np.asarray(caffe_preprocess()(x)), expected, atol=1e-4)


def test_resnet50_transfer_is_frozen_with_a_1024_dense_head():
    model = build_model("resnet50_transfer", (32, 32, 3), 2)
    backbone = model.get_layer("resnet50")
    assert not backbone.trainable
    assert model.get_layer("preprocess").trainable is False
    dense = [x for x in model.layers if isinstance(x, keras.layers.Dense)]
    assert [d.units for d in dense] == [1024, 1]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 2048 * 1024 + 1024 + 1024 + 1
    weighted = [layer for layer in backbone.layers if layer.weights]
    bn = keras.layers.BatchNormalization
    top = [layer for layer in weighted[-5:] if not isinstance(layer, bn)]
    assert 0 < len(top) < 5  # ResNet50 ends conv, BN, conv, BN, ...: BN stays frozen
    unfrozen = unfreeze_top(model, 5)
    assert unfrozen == len(top)
    assert [layer.name for layer in backbone.layers if layer.trainable] == [x.name for x in top]
    newly = sum(int(np.prod(w.shape)) for layer in top for w in layer.trainable_weights)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable + newly


def test_too_small_images_and_single_class_are_config_errors():
    with pytest.raises(ConfigError, match="at least 32 px"):
        build_model("mobilenet_transfer", (16, 16, 3), 2)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_model("small_cnn", (32, 32, 3), 1)


def test_missing_imagenet_weights_name_the_file_and_the_option(monkeypatch):
    monkeypatch.setenv("PIXELPIPE_OFFLINE", "1")  # never download in tests
    with pytest.raises(WeightsNotFoundError) as caught:
        resolve_weights("resnet50_transfer", "imagenet", image_size=32)
    message = str(caught.value)
    expected = (
        keras_cache_dirs()[0] / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    assert str(expected) in message and "--weights" in message
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(WeightsNotFoundError, match=r"mobilenet_2_5_224_tf_no_top\.h5"):
        resolve_weights("mobilenet_transfer", "imagenet", alpha=0.25, image_size=96)


def test_weights_resolution_for_cached_local_and_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELPIPE_OFFLINE", "1")
    assert resolve_weights("small_cnn", "imagenet") is None  # no backbone: ignored
    assert resolve_weights("resnet50_transfer", "none") is None
    assert resolve_weights("resnet50_transfer", None) is None
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights("resnet50_transfer", str(tmp_path / "nope.h5"))
    local = tmp_path / "w.h5"
    local.write_bytes(b"x")
    assert resolve_weights("resnet50_transfer", str(local)) == str(local)
    cache = keras_cache_dirs()[0] / "models"
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / "mobilenet_5_0_128_tf_no_top.h5"
    cached.write_bytes(b"x")
    try:
        assert resolve_weights("mobilenet_transfer", "imagenet", 0.5, 128) == "imagenet"
    finally:
        cached.unlink()


def test_local_weights_file_loads_into_the_backbone(tmp_path):
    donor = keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.25
    )
    path = tmp_path / "mobilenet.weights.h5"
    donor.save_weights(path)
    model = build_model("mobilenet_transfer", (32, 32, 3), 2, weights=str(path), alpha=0.25)
    got = model.get_layer(donor.name).get_weights()[0]
    assert np.array_equal(got, donor.get_weights()[0])
