"""train_classifier's settings, declared once: the flow's parameters extend them, the training
task receives them, and the CLI's options and the Prefect form are generated from them."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from storage.errors import ConfigError
from storage.params import Settings, WeightsPath

ModelName = Literal["cifar_cnn", "small_cnn", "resnet50_transfer", "mobilenet_transfer"]
MODELS: tuple[str, ...] = get_args(ModelName)
TRANSFER_MODELS = ("resnet50_transfer", "mobilenet_transfer")
# Smallest input side each model accepts (three valid 3x3 convs and two 2x2 pools need 18;
# Keras applications refuse below 32).
MIN_SIZE = {"cifar_cnn": 18, "small_cnn": 18, "resnet50_transfer": 32, "mobilenet_transfer": 32}


def check_image_size(model: str, size: int | tuple[int, ...] | list[int]) -> None:
    """The one minimum-input-size rule: the settings, the flow (the images' own size) and the
    model factory all ask here. A ConfigError (a ValueError, so pydantic reports it)."""
    side = size if isinstance(size, int) else min(size)
    least = MIN_SIZE.get(model)
    if least is not None and side < least:
        raise ConfigError(
            f"{model} needs images of at least {least} px, got {side} px: set image_size"
        )


class Augmentation(Settings):
    """The classic ImageDataGenerator knobs, with their meaning; all off by default."""

    rotation_range: float = Field(0.0, ge=0, le=180, description="Random rotation, ± degrees")
    width_shift_range: float = Field(0.0, ge=0, lt=1, description="Horizontal shift, ± width share")
    height_shift_range: float = Field(0.0, ge=0, lt=1, description="Vertical shift, ± height share")
    shear_range: float = Field(0.0, ge=0, lt=90, description="Shear angle, ± degrees")
    zoom_range: tuple[float, float] = Field(
        (1.0, 1.0), description="Zoom factor range (lower, upper); above 1 zooms out, as in Keras 2"
    )
    brightness_range: tuple[float, float] | None = Field(
        None, description="Multiplicative brightness range (lower, upper), e.g. 0.5 1.0"
    )
    horizontal_flip: bool = Field(False, description="Randomly mirror left-right")
    vertical_flip: bool = Field(False, description="Randomly mirror top-bottom")
    fill_mode: Literal["nearest", "reflect", "wrap", "constant"] = Field(
        "nearest", description="How pixels outside the image are filled"
    )
    cval: float = Field(0.0, ge=0, le=255, description="Fill value for fill_mode=constant")

    @model_validator(mode="after")
    def _ranges(self) -> Augmentation:
        for name in ("zoom_range", "brightness_range"):
            pair = getattr(self, name)
            if pair is not None and not 0 < pair[0] <= pair[1]:
                raise ValueError(f"{name} must be (lower, upper) with 0 < lower <= upper")
        return self


class TrainSettings(Settings):
    """How to train: the model, its schedule, augmentation and weights."""

    model: ModelName = Field("small_cnn", description="Model to train")
    epochs: int = Field(10, ge=1, le=1000, description="Epochs to train")
    batch_size: int = Field(32, ge=1, le=4096, description="Images per batch")
    image_size: int | None = Field(
        None, ge=8, le=4096, description="Input side in pixels; default: the dataset's"
    )
    augmentation: Augmentation = Field(
        default_factory=Augmentation, description="Training-only augmentation"
    )
    optimizer: Literal["adam", "nadam", "sgd", "rmsprop"] | None = Field(
        None, description="Override the model's optimizer"
    )
    learning_rate: float | None = Field(None, gt=0, le=10, description="Override the model's LR")
    weights: WeightsPath | None = Field(
        "imagenet", description="Backbone weights: 'imagenet', a local .h5 file, or none"
    )
    alpha: float = Field(0.25, gt=0, le=1.4, description="MobileNet width multiplier")
    fine_tune_layers: int = Field(0, ge=0, description="Unfreeze the top N backbone layers")
    fine_tune_epochs: int = Field(
        0, ge=0, le=1000, description="Epochs after `epochs` with those layers unfrozen, LR / 10"
    )
    validation_split: float = Field(
        0.0, ge=0, lt=1, description="Hold out this share of train/ when there is no val/"
    )
    early_stopping_patience: int | None = Field(None, ge=1, description="Stop after N flat epochs")
    mixed_precision: bool = Field(False, description="Train in mixed_bfloat16")
    seed: int = Field(42, description="Seed for shuffling, augmentation and weights")

    @model_validator(mode="after")
    def _consistent(self) -> TrainSettings:
        transfer = self.model in TRANSFER_MODELS
        if (self.fine_tune_layers or self.fine_tune_epochs) and not transfer:
            raise ValueError("fine_tune_layers/fine_tune_epochs need a *_transfer model")
        if bool(self.fine_tune_layers) != bool(self.fine_tune_epochs):
            raise ValueError("give both fine_tune_layers and fine_tune_epochs, or neither")
        if isinstance(self.image_size, int):
            check_image_size(self.model, self.image_size)
        return self
