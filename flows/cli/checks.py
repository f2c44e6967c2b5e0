"""Checks a command runs before TensorFlow is imported or a Prefect server is started or
contacted, so a mistake costs seconds, not a failed flow run (the flows check again); and
`latest`, resolved to a run id in this one place. Nothing here imports TensorFlow or Prefect
(tests/flows/cli/test_cli_fast.py holds that)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flows.params import PipelineParams, PredictParams, ReportParams, TrainParams
from flows.params.checks import check_curate, check_inputs
from flows.params.registry import PromoteParams, RollbackParams
from storage.champions import read_champion
from storage.errors import ConfigError
from storage.layout import Layout, resolve_data_dir
from storage.model_card import card_file
from storage.parquet import read_table
from storage.schemas import TABLES
from tasks.predict.inputs import collect_images
from tasks.predict.spec import resolve_model
from tasks.registry.candidate import candidate
from tasks.train.spec import scan_dataset

LATEST = "latest"
# Where the latest run of each stage is found: a warehouse table, or (train) the models folder.
STAGE_TABLES = {
    "scrape": ["scrape_manifest"], "curation": ["curation"], "dataset": ["dataset_manifest"],
    "predict": ["predictions"], "any": list(TABLES),
}  # fmt: skip
# (command, field) -> the stage whose latest run `latest` names there. A run id a command
# writes (scrape --run-id) is never `latest`: that would overwrite the latest run.
LATEST_FIELDS = {
    "report": {"run_id": "any", "scrape_run": "scrape", "dataset_run": "dataset",
               "train_run": "train", "predict_run": "predict"},
    "promote": {"run_id": "train"},
    "train": {"resume_run": "train"},
    "predict": {"scrape_run": "scrape", "model": "train"},
    "prepare": {"exclude_curation": "curation"},
}  # fmt: skip


def latest_run(stage: str, data_dir: str | None = None) -> str:
    """The run id of the stage's most recently written run; a ConfigError when there is none."""
    root = resolve_data_dir(data_dir)
    if stage == "train":
        models = root / "models"
        cards = [card_file(d) for d in models.iterdir()] if models.is_dir() else []
        if cards := [card for card in cards if card.is_file()]:
            return max(cards, key=lambda p: p.stat().st_mtime).parent.name
    else:
        files = [
            f for table in STAGE_TABLES.get(stage, [stage])
            for f in Layout.at(root).table_dir(table).glob("run_date=*/*.parquet")
        ]  # fmt: skip
        if files:
            newest = max(files, key=lambda p: p.stat().st_mtime)
            return _run_of(newest)
    what = "run" if stage == "any" else f"{stage} run"
    raise ConfigError(f"`latest`: no {what} under {root} yet")


def _run_of(part: Path) -> str:
    import pyarrow.parquet as pq

    column = pq.read_table(part, columns=["run_id"]).column("run_id")
    if len(column) == 0:
        raise ConfigError(f"`latest`: {part} holds no rows")
    return str(column[0])


def resolve_latest(command: str, params: BaseModel) -> Any:
    """`params` with every `latest` of this command replaced by the run id it names."""
    fields = LATEST_FIELDS.get(command, {})
    data_dir = getattr(params, "data_dir", None)
    update = {
        name: latest_run(stage, data_dir)
        for name, stage in fields.items()
        if getattr(params, name, None) == LATEST
    }
    return params.model_copy(update=update) if update else params


def check_model(params: PredictParams) -> None:
    """predict_batch's model and weights check."""
    resolve_model(
        params.model, params.weights, data_dir=params.data_dir,
        mixed_precision=params.mixed_precision,
    )  # fmt: skip


def check_predict(params: PredictParams) -> None:
    """The inputs exist and hold images; the model and its weights files exist."""
    collect_images(
        params.inputs, scrape_run=params.scrape_run, dataset_dir=params.dataset_dir,
        split=params.split, data_dir=params.data_dir,
    )  # fmt: skip
    check_model(params)


def check_train(params: TrainParams) -> None:
    """The run to resume has a model card; else the dataset folder holds classes of images."""
    if params.resume_run:
        card = card_file(Layout.at(params.data_dir).model_dir(params.resume_run))
        if not card.is_file():
            raise ConfigError(f"cannot resume run {params.resume_run!r}: {card} does not exist")
        return
    if not params.dataset_dir:
        raise ConfigError("--dataset-dir is required: a prepared folder with train/<class>/")
    scan_dataset(params.dataset_dir, params.validation_split)


def check_promote(params: PromoteParams) -> None:
    """The run has a trained model and a finished model card."""
    candidate(params.run_id, params.data_dir)


def check_rollback(params: RollbackParams) -> None:
    """The dataset has a champion with a previous one to go back to."""
    before = read_champion(params.dataset, params.data_dir)
    if before is None or not before.previous:
        raise ConfigError(f"dataset {params.dataset!r} has no previous champion to roll back to")


def check_pipeline(params: PipelineParams) -> None:
    """image_pipeline's own disk checks (folders, classes, model and weights files)."""
    check_inputs(params)


def check_run_recorded(params: ReportParams) -> None:
    """A run id with no rows in any table (and no model folder) is a mistake, not a run to
    report on. The flow itself still reports on an empty run (a pipeline's notes)."""
    runs = params.stage_runs()
    root = resolve_data_dir(params.data_dir)
    ids = sorted(set(runs.values()))
    if Layout.at(root).model_dir(runs["train"]).is_dir():
        return
    for table in TABLES:
        if not read_table(table, data_dir=root, run_id=ids, columns=["run_id"]).empty:
            return
    raise ConfigError(
        f"no table has rows for run {', '.join(ids)} under {root}: see `pixelpipe runs`"
        " for the run ids there are"
    )


CHECKS = {
    "curate": check_curate, "predict": check_predict, "train": check_train,
    "promote": check_promote, "rollback": check_rollback, "run": check_pipeline,
    "report": check_run_recorded,
}  # fmt: skip
