"""Our copy of the weights files keras.applications downloads (tasks/keras_compat.py) against
Keras's own source: a Keras release that renames a file, moves it or changes its hash fails
here, not on an offline machine that looks for the old name."""

from __future__ import annotations

import importlib
import inspect
import re

import keras

from tasks.keras_compat import BACKBONES, MOBILENET_ORIGIN, RESNET50_NOTOP

# Our backbone name -> the keras/src/applications module that downloads its weights.
SOURCES = {
    "resnet50": "resnet", "resnet101": "resnet", "mobilenet": "mobilenet",
    "mobilenet_v2": "mobilenet_v2", "vgg16": "vgg16", "densenet121": "densenet",
    "inception_v3": "inception_v3", "efficientnet_b0": "efficientnet",
}  # fmt: skip


def keras_source(module: str) -> str:
    """The module's source with adjacent string literals joined, as Python joins them."""
    source = inspect.getsource(importlib.import_module(f"keras.src.applications.{module}"))
    return re.sub(r"\"\s+\"", "", source)


def test_every_backbone_names_the_origin_file_and_hash_keras_uses():
    assert set(SOURCES) == set(BACKBONES)
    for name, module in SOURCES.items():
        backbone, source = BACKBONES[name], keras_source(module)
        assert backbone.origin in source, (name, backbone.origin)
        stem = backbone.file.removesuffix(".h5").split("_weights")[0].split("_1_0")[0]
        assert stem in source, (name, backbone.file)
        assert backbone.md5 is None or backbone.md5 in source, (name, backbone.md5)
        assert callable(getattr(keras.applications, backbone.constructor)), name


def test_the_no_top_files_transfer_learning_builds_on():
    resnet = importlib.import_module("keras.src.applications.resnet")
    assert RESNET50_NOTOP.origin == resnet.BASE_WEIGHTS_PATH
    assert RESNET50_NOTOP.md5 == resnet.WEIGHTS_HASHES["resnet50"][1]
    mobilenet = importlib.import_module("keras.src.applications.mobilenet")
    assert MOBILENET_ORIGIN == mobilenet.BASE_WEIGHT_PATH
    assert "_tf_no_top.h5" in keras_source("mobilenet")
