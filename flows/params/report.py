"""write_report's parameters."""

from __future__ import annotations

from pydantic import Field

from flows.params.base import RunId, StageParams
from storage.layout import safe_name


class ReportParams(StageParams):
    run_id: RunId = Field(description="The run to report on")
    title: str | None = Field(None, description="Report title; default: 'pixelpipe run <id>'")
    scrape_run: RunId | None = Field(None, description="Scrape rows of this run; default: run_id")
    dataset_run: RunId | None = Field(None, description="Dataset rows of this run; default: run_id")
    train_run: RunId | None = Field(
        None, description="Training history and model of this run; default: run_id"
    )
    predict_run: RunId | None = Field(None, description="Predictions of this run; default: run_id")
    sample: int = Field(8, ge=1, le=64, description="Images shown per label / in the top-k table")
    max_filters: int = Field(16, ge=1, le=64, description="Learned filters shown")
    notes: list[str] = Field(
        default_factory=list, description="Lines shown under the title (e.g. a skipped stage)"
    )

    def stage_runs(self) -> dict[str, str]:
        """The run id each stage's rows are read from (all the report's own id unless given)."""
        runs = {
            "report": self.run_id,
            "scrape": self.scrape_run or self.run_id,
            "dataset": self.dataset_run or self.run_id,
            "train": self.train_run or self.run_id,
            "predict": self.predict_run or self.run_id,
        }
        for stage, run in runs.items():
            safe_name(run, f"{stage} run id")
        return runs
