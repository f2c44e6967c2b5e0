"""Checks a command runs before TensorFlow is imported or a Prefect server is started, so a
mistake costs seconds, not a failed flow run (the flows check again)."""

from __future__ import annotations

import tasks.predict.engines  # noqa: F401  (before spec: importing spec first is a cycle)
from flows.params import PredictParams, ReportParams
from flows.write_report import stage_runs
from storage.errors import ConfigError
from storage.layout import Layout, resolve_data_dir
from storage.parquet import read_table
from storage.schemas import TABLES
from tasks.predict.spec import resolve_model


def check_model(params: PredictParams) -> None:
    """predict_batch's model and weights check."""
    resolve_model(
        params.model, params.weights, data_dir=params.data_dir,
        mixed_precision=params.mixed_precision,
    )  # fmt: skip


def check_run_recorded(params: ReportParams) -> None:
    """A run id with no rows in any table (and no model folder) is a mistake, not a run to
    report on. The flow itself still reports on an empty run (a pipeline's notes)."""
    runs = stage_runs(params)
    root = resolve_data_dir(params.data_dir)
    ids = sorted(set(runs.values()))
    if Layout.at(root).model_dir(runs["train"]).is_dir():
        return
    for table in TABLES:
        if not read_table(table, data_dir=root, run_id=ids, columns=["run_id"]).empty:
            return
    raise ConfigError(
        f"no table has rows for run {', '.join(ids)} under {root}: see `pixelpipe tables`"
        " and `pixelpipe show scrape_manifest` for the run ids there are"
    )
