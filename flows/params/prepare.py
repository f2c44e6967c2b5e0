"""prepare_dataset's parameters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flows.params.base import (
    DatasetName,
    LocalPath,
    RunId,
    Runner,
    StageParams,
    check_runner,
    dask_address_field,
    runner_field,
)


class PrepareParams(StageParams):
    source_dir: LocalPath | None = Field(
        None, description="A <class>/<image> folder; default: raw/<label>/ under the data root"
    )
    labels: list[str] | None = Field(
        None, description="Classes to use (default: all); 'src=dst' renames a class"
    )
    dataset: DatasetName = Field("default", description="Dataset name: datasets/<dataset>/")
    image_size: int = Field(224, ge=8, le=4096, description="Output side in pixels (square)")
    resize_mode: Literal["stretch", "crop", "pad"] = Field(
        "stretch", description="stretch; crop (center crop to aspect); pad (letterbox)"
    )
    resample: Literal["bicubic", "lanczos"] = Field(
        "bicubic", description="Downsampling filter: bicubic (~25% faster) or lanczos (sharper)"
    )
    image_format: Literal["jpeg", "png"] = Field("jpeg", description="Output file format")
    quality: int = Field(95, ge=1, le=100, description="JPEG quality")
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="Share of images in val/")
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of images in test/")
    seed: int = Field(1337, description="Seed of the content-hash split")
    max_per_class: int | None = Field(None, ge=1, description="Keep at most this many per class")
    near_duplicates: bool = Field(
        True, description="Keep near-duplicate images (perceptual hash) in one split"
    )
    near_duplicate_distance: int = Field(
        6,
        ge=0,
        le=16,
        description="Most differing bits of two 64-bit pHashes (whole image or its centre) that"
        " still make one group; 6 caught every re-encode and resize and 99.9% of 6% crops of"
        " the shared photos (BENCHMARKS.md); above 7 grouping slows ~10x",
    )
    workers: int | None = Field(None, ge=1, le=256, description="Processes; default: all cores")
    batch_size: int = Field(
        1000, ge=1, le=10_000,
        description="Images per task: each task run costs the Prefect server a few writes, so"
        " fewer, bigger tasks keep it off the cores that render",
    )  # fmt: skip
    force: bool = Field(False, description="Re-render every image even if its output exists")
    exclude_curation: RunId | None = Field(
        None, description="Leave out the images this curate_images run flagged"
    )
    runner: Runner = runner_field("processes", "processes: the `workers` pool")
    dask_address: str | None = dask_address_field()

    @model_validator(mode="after")
    def _fractions(self) -> PrepareParams:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be below 1 (leave images to train)")
        check_runner(self.runner, self.dask_address)
        return self
