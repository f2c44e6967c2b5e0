"""promote_model's, rollback's and `pixelpipe models`' parameters."""

from __future__ import annotations

from pydantic import Field, model_validator

from flows.params.base import DatasetName, LocalPath, Params, RunId, StageParams


class PromoteParams(StageParams):
    run_id: RunId = Field(description="The train run whose model challenges its dataset's champion")
    min_improvement: float = Field(
        0.005, ge=0, le=1, description="Promote when accuracy improves by at least this much"
    )
    max_class_drop: float = Field(
        5.0, ge=0, le=100, description="...and no class loses more than this many points"
    )
    force: bool = Field(
        False, description="Make it the champion whatever the numbers (with reason)"
    )
    reason: str | None = Field(
        None, max_length=500, description="Why, recorded with a forced promotion"
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Images per model call when scoring")
    lock_timeout_s: float = Field(
        900, gt=0, le=86_400, description="Longest wait for another promotion of the dataset"
    )

    @model_validator(mode="after")
    def _forced_with_reason(self) -> PromoteParams:
        if self.force and not (self.reason or "").strip():
            raise ValueError("force needs a reason (--reason TEXT): it is recorded in the table")
        if self.reason and not self.force:
            raise ValueError("reason is recorded with force only; add --force or drop --reason")
        return self


class RollbackParams(Params):
    data_dir: LocalPath | None = Field(
        None, description="Data root; default $PIXELPIPE_DATA_DIR, else ./data"
    )
    dataset: DatasetName = Field(description="Dataset whose previous champion comes back")
    reason: str | None = Field(None, max_length=500, description="Why, recorded in the table")
    lock_timeout_s: float = Field(
        900, gt=0, le=86_400, description="Longest wait for a promotion of the dataset"
    )


class ModelsParams(Params):
    data_dir: LocalPath | None = Field(
        None, description="Data root; default $PIXELPIPE_DATA_DIR, else ./data"
    )
    dataset: DatasetName | None = Field(None, description="Only this dataset's models")
