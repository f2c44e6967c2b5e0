"""predict_batch's parameters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flows.params.base import (
    OPENVINO_INSTALL,
    LocalPath,
    ModelRef,
    RunId,
    Runner,
    StageParams,
    WeightsPath,
    check_runner,
    dask_address_field,
    installed,
    runner_field,
)


class PredictParams(StageParams):
    inputs: list[LocalPath] = Field(
        default_factory=list, description="Image files or folders (searched recursively)"
    )
    scrape_run: RunId | None = Field(None, description="Predict the ok images of this scrape run")
    dataset_dir: LocalPath | None = Field(None, description="Predict a split of this dataset")
    split: Literal["train", "val", "test"] = Field("val", description="Split of dataset_dir")
    model: ModelRef = Field(
        "resnet50",
        description="An ImageNet backbone (resnet50, mobilenet_v2, resnet101, vgg16, ...), a"
        " best.keras (or its folder, or a train run id), a .tflite classifier, or a dataset's"
        " champion: champion:<dataset> (plain champion when one dataset has one)",
    )
    weights: WeightsPath | None = Field(
        "imagenet", description="ImageNet backbone weights: 'imagenet', a local file, or none"
    )
    top_k: int = Field(3, ge=1, le=20, description="Labels kept per image")
    targets: list[str] = Field(
        default_factory=lambda: ["banana"], description="Class names or WordNet ids to look for"
    )
    target_rank: int | None = Field(
        None, ge=1, description="A target counts within this rank (default: top_k, < classes)"
    )
    threshold: float = Field(0.5, ge=0, le=1, description="Binary models: class 1 at or above")
    batch_size: int = Field(32, ge=1, le=4096, description="Images per model call")
    mixed_precision: bool = Field(
        False, description="Run an ImageNet backbone in mixed_bfloat16 (faster on AMX/GPU)"
    )
    shard_size: int = Field(1000, ge=1, description="Images per task (shard)")
    runner: Runner = runner_field(
        "threads", "threads: one shard at a time, the model uses every core"
    )
    dask_address: str | None = dask_address_field()
    backend: Literal["keras", "openvino"] = Field(
        "keras",
        description="Inference engine: keras, or openvino (the model converted once, cached"
        " beside it; needs the openvino extra)",
    )
    precision: Literal["fp32", "bf16", "int8"] = Field(
        "fp32",
        description="backend=openvino: fp32, bf16 (AMX), or int8 (NNCF post-training quantization)",
    )
    max_accuracy_drop: float = Field(
        0.5,
        le=100,
        description="int8 of a trained model: refuse when validation accuracy drops more than"
        " this many points below fp32 (100: no check)",
    )
    calibration_size: int = Field(
        300, ge=1, le=10_000, description="int8: calibration images (train split, else inputs)"
    )

    resize_mode: Literal["stretch", "crop", "pad"] | None = Field(
        None,
        description="Override the model's resize: stretch (the classic recipe), crop (short"
        " side to size/crop_fraction, centre crop) or pad; default: the model's own",
    )
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"] | None = (
        Field(None, description="Override the model's resize filter (classic recipe: nearest)")
    )
    crop_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="resize_mode crop: centre share kept (ImageNet 0.875)"
    )

    @model_validator(mode="after")
    def _crop_fraction(self) -> PredictParams:
        if self.crop_fraction is not None and self.resize_mode not in (None, "crop"):
            raise ValueError("crop_fraction applies to resize_mode crop; drop one of them")
        return self

    @model_validator(mode="after")
    def _one_source(self) -> PredictParams:
        given = [bool(self.inputs), self.scrape_run is not None, self.dataset_dir is not None]
        if sum(given) > 1:
            raise ValueError("give only one of inputs, scrape_run or dataset_dir")
        check_runner(self.runner, self.dask_address)
        return self

    @model_validator(mode="after")
    def _engine(self) -> PredictParams:
        if self.backend == "keras":
            if self.precision != "fp32":
                raise ValueError(
                    "precision applies to backend=openvino; the Keras backend's bf16 is"
                    " mixed_precision"
                )
            return self
        if self.mixed_precision:
            raise ValueError("mixed_precision is the Keras backend's bf16: use precision=bf16")
        needed = ["openvino"] + (["nncf"] if self.precision == "int8" else [])
        missing = [name for name in needed if not installed(name)]
        if missing:
            raise ValueError(
                f"backend=openvino needs {' and '.join(missing)}, not installed here:"
                f" {OPENVINO_INSTALL}"
            )
        return self

    @model_validator(mode="after")
    def _target_rank(self) -> PredictParams:
        if self.target_rank is not None and self.target_rank > self.top_k:
            raise ValueError("target_rank must be at most top_k (targets are marked on kept rows)")
        return self
