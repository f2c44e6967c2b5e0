"""The ImageNet weights files keras.applications downloads: their names, where from, and the md5
Keras checks. Keras has no public API that names them (they are module constants of
keras/src/applications/*.py), yet an offline machine needs the names to find a file in the
cache or to say which file is missing. tests/tasks/test_keras_compat.py compares every entry
with Keras's own constants and fails loudly when a Keras release changes one."""

from __future__ import annotations

from dataclasses import dataclass

_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Backbone:
    """A keras.applications ImageNet classifier and the weights file Keras caches for it."""

    constructor: str  # attribute of keras.applications
    module: str  # keras.applications.<module>.preprocess_input
    file: str  # name in $KERAS_HOME/models
    origin: str
    md5: str | None  # Keras checks it when it has one
    size: int = 224


BACKBONES: dict[str, Backbone] = {
    "resnet50": Backbone(
        "ResNet50",
        "resnet50",
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        _GCS + "resnet/",
        "2cb95161c43110f7111970584f804107",
    ),
    "resnet101": Backbone(
        "ResNet101",
        "resnet",
        "resnet101_weights_tf_dim_ordering_tf_kernels.h5",
        _GCS + "resnet/",
        "f1aeb4b969a6efcfb50fad2f0c20cfc5",
    ),
    "mobilenet": Backbone(
        "MobileNet", "mobilenet", "mobilenet_1_0_224_tf.h5", _GCS + "mobilenet/", None
    ),
    "mobilenet_v2": Backbone(
        "MobileNetV2",
        "mobilenet_v2",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
        _GCS + "mobilenet_v2/",
        None,
    ),
    "vgg16": Backbone(
        "VGG16",
        "vgg16",
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        _GCS + "vgg16/",
        "64373286793e3c8b2b4e3219cbf3544b",
    ),
    "densenet121": Backbone(
        "DenseNet121",
        "densenet",
        "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
        _GCS + "densenet/",
        "9d60b8095a5708f2dcce2bca79d332c7",
    ),
    "inception_v3": Backbone(
        "InceptionV3",
        "inception_v3",
        "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        _GCS + "inception_v3/",
        "9a0d58056eeedaa3f26cb7ebd46da564",
        299,
    ),
    "efficientnet_b0": Backbone(
        "EfficientNetB0",
        "efficientnet",
        "efficientnetb0.h5",
        "https://storage.googleapis.com/keras-applications/",
        "902e53a9f72be733fc0bcb005b3ebbac",
    ),
}


# The no-top files transfer learning builds on (tasks/train/models.py).
RESNET50_NOTOP = Backbone(
    "ResNet50",
    "resnet50",
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    _GCS + "resnet/",
    "4d473c1dd8becc155b73f8504c6f6626",
)
MOBILENET_ORIGIN = _GCS + "mobilenet/"  # mobilenet_<alpha>_<rows>_tf_no_top.h5, no md5
