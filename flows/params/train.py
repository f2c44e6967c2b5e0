"""train_classifier's parameters (and augment-preview's): the stage's settings
(tasks/train/settings.py) plus where the data is and which run to continue."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flows.params.base import OPENVINO_INSTALL, LocalPath, Params, RunId, StageParams, installed
from tasks.train.settings import Augmentation, TrainSettings


class TrainParams(StageParams, TrainSettings):
    dataset_dir: LocalPath | None = Field(
        None, description="Prepared dataset folder with train/ and val/ (required alone)"
    )
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
    def _run_and_export(self) -> TrainParams:
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
    augmentation: Augmentation = Field(
        default_factory=Augmentation, description="The augmentation to preview"
    )
