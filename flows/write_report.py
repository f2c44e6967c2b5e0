"""The write-report flow: one run's tables and model card -> report.html, report.md, artifacts."""

from __future__ import annotations

from pydantic import BaseModel

from flows.gate.entry import gated_flow
from flows.params import ReportParams
from storage.errors import ConfigError
from storage.layout import resolve_data_dir
from tasks.report.tasks import build_report, publish_artifacts


class ReportResult(BaseModel):
    run_id: str
    report_path: str
    markdown_path: str
    sections: list[str]
    plots: list[str]
    artifact_keys: list[str]


# creates_root=False: the body refuses a missing data root; the claim must not create it.
@gated_flow(
    name="write-report",
    description="Write the HTML/Markdown report of a run.",
    creates_root=False,
)
def write_report(params: ReportParams) -> ReportResult:
    """Read a run back from the warehouse and write reports/<run>/report.html and report.md."""
    runs = params.stage_runs()
    root = resolve_data_dir(params.data_dir)
    if not root.is_dir():
        raise ConfigError(
            f"data root {root} does not exist: check --data-dir / $PIXELPIPE_DATA_DIR"
        )
    title = params.title or f"pixelpipe run {params.run_id}"
    built = build_report(
        runs, str(root), title, params.sample, params.max_filters, notes=params.notes
    )
    keys = publish_artifacts(built)
    return ReportResult(
        run_id=built.run_id,
        report_path=built.html_path,
        markdown_path=built.markdown_path,
        sections=built.sections,
        plots=built.plots,
        artifact_keys=keys,
    )
