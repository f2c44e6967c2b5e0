"""train_classifier's parameters (and augment-preview's)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flows.params.base import (
    OPENVINO_INSTALL,
    LocalPath,
    Params,
    RunId,
    StageParams,
    WeightsPath,
    installed,
)
from tasks.train.spec import TRANSFER_MODELS, check_image_size


class AugmentationParams(Params):
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
    def _ranges(self) -> AugmentationParams:
        for name in ("zoom_range", "brightness_range"):
            pair = getattr(self, name)
            if pair is not None and not 0 < pair[0] <= pair[1]:
                raise ValueError(f"{name} must be (lower, upper) with 0 < lower <= upper")
        return self


class TrainParams(StageParams):
    dataset_dir: LocalPath | None = Field(
        None, description="Prepared dataset folder with train/ and val/ (required alone)"
    )
    model: Literal["cifar_cnn", "small_cnn", "resnet50_transfer", "mobilenet_transfer"] = Field(
        "small_cnn", description="Model to train"
    )
    epochs: int = Field(10, ge=1, le=1000, description="Epochs to train")
    batch_size: int = Field(32, ge=1, le=4096, description="Images per batch")
    image_size: int | None = Field(
        None, ge=8, le=4096, description="Input side in pixels; default: the dataset's"
    )
    augmentation: AugmentationParams = Field(
        default_factory=AugmentationParams, description="Training-only augmentation"
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
    resume_run: RunId | None = Field(None, description="Continue this run's training")
    export: list[Literal["openvino"]] = Field(
        default_factory=list,
        description="Also export the best model for inference: openvino (fp32 IR beside it,"
        " reused by predict --backend openvino; needs the openvino extra)",
    )

    def claimed_run(self) -> str | None:
        """A resumed run writes under the run it continues."""
        return self.resume_run or self.run_id

    @model_validator(mode="after")
    def _consistent(self) -> TrainParams:
        transfer = self.model in TRANSFER_MODELS
        if (self.fine_tune_layers or self.fine_tune_epochs) and not transfer:
            raise ValueError("fine_tune_layers/fine_tune_epochs need a *_transfer model")
        if bool(self.fine_tune_layers) != bool(self.fine_tune_epochs):
            raise ValueError("give both fine_tune_layers and fine_tune_epochs, or neither")
        if self.image_size is not None:
            check_image_size(self.model, self.image_size)
        if self.resume_run and self.run_id and self.resume_run != self.run_id:
            raise ValueError("resume_run continues that run: leave run_id empty or equal to it")
        if "openvino" in self.export and not installed("openvino"):
            raise ValueError(
                f"export=openvino needs OpenVINO, not installed here: {OPENVINO_INSTALL}"
            )
        return self


class AugmentPreviewParams(Params):
    dataset_dir: LocalPath = Field(
        description="Dataset folder (train/<class>/) or a <class>/ folder"
    )
    out: LocalPath = Field("augment-preview.png", description="PNG file to write")
    variants: int = Field(8, ge=1, le=64, description="Augmented variants per image")
    images: int = Field(4, ge=1, le=32, description="Training images shown (one row each)")
    image_size: int | None = Field(None, ge=8, le=1024, description="Side; default: the images'")
    seed: int = Field(0, description="Seed of the random transforms")
    augmentation: AugmentationParams = Field(
        default_factory=AugmentationParams, description="The augmentation to preview"
    )
