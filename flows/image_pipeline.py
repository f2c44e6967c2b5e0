"""image_pipeline: scrape, prepare, train, promote, predict and report as subflows sharing one
run id."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from flows.curate_images import CurateResult, curate_images
from flows.gate.entry import gated_flow
from flows.params import (
    CurateParams,
    PipelineParams,
    PredictParams,
    PrepareParams,
    ReportParams,
    ScrapeParams,
    TrainParams,
)
from flows.params.checks import check_inputs
from flows.params.registry import PromoteParams
from flows.predict_batch import PredictResult, predict_batch
from flows.prepare_dataset import PrepareResult, prepare_dataset
from flows.promote_model import promote_model
from flows.scrape_images import ScrapeResult, scrape_images
from flows.train_classifier import train_classifier
from flows.write_report import write_report
from storage.errors import WeightsNotFoundError
from storage.layout import Layout, new_run_id, safe_name
from tasks.curate.features import feature_spec
from tasks.runtime import logger


class PipelineResult(BaseModel):
    """What one pipeline run did and every path it wrote (paths as str, like every result)."""

    run_id: str
    data_dir: str
    stages_run: list[str] = Field(default_factory=list)
    stages_skipped: dict[str, str] = Field(default_factory=dict, description="stage -> why")
    scrape_manifest_paths: dict[str, str] = Field(default_factory=dict, description="by label")
    raw_dirs: dict[str, str] = Field(default_factory=dict, description="by label")
    curation_path: str | None = None
    notes: list[str] = Field(default_factory=list, description="What was skipped and why")
    dataset_dir: str | None = None
    dataset_manifest_path: str | None = None
    class_names: list[str] = Field(default_factory=list)
    model_path: str | None = None
    model_card_path: str | None = None
    history_path: str | None = None
    best_val_accuracy: float | None = None
    decision: str | None = None  # the registry's, about this run's model (promote_model)
    decision_reason: str | None = None
    champion_run: str | None = None  # the dataset's champion after it: the model predicted with
    predicted_with: str | None = None  # the model file the predictions came from
    predictions_path: str | None = None
    imagenet_predictions_path: str | None = None
    report_path: str | None = None
    # Each stage's own result, so `pixelpipe run` can say what each stage left out and why,
    # as the stage's own command does.
    scraped: list[ScrapeResult] = Field(default_factory=list, description="Each scrape's result")
    curated: CurateResult | None = None
    prepared: PrepareResult | None = None
    predicted: list[PredictResult] = Field(
        default_factory=list, description="The trained model's predictions, then ImageNet's"
    )

    def paths(self) -> list[str]:
        """Every file or folder this run wrote or used as its output, in stage order."""
        found = [*self.scrape_manifest_paths.values(), *self.raw_dirs.values()]
        for name in (
            "curation_path",
            "dataset_dir",
            "dataset_manifest_path",
            "model_path",
            "model_card_path",
            "history_path",
            "predictions_path",
            "imagenet_predictions_path",
            "report_path",
        ):
            if getattr(self, name):
                found.append(getattr(self, name))
        return found


def _scrape(params: PipelineParams, result: PipelineResult) -> str | None:
    """Scrape each label's pages, or the URL list; returns the folder prepare reads from."""
    if not params.sources and not params.scrape.url_list:
        result.stages_skipped["scrape_images"] = "no sources given"
        return params.source_dir
    run = {"data_dir": result.data_dir, "run_id": result.run_id}
    if params.scrape.url_list:  # one scrape, a label per row: raw_dirs gets each label found
        scraped = scrape_images(params=ScrapeParams(**params.scrape.model_dump(), **run))
        result.scraped.append(scraped)
        result.scrape_manifest_paths[scraped.label] = scraped.manifest_path
        raw = Layout.at(result.data_dir).root / "raw"
        result.raw_dirs.update({label: (raw / label).as_posix() for label in scraped.labels})
    for label, pages in params.source_pages().items():
        scraped = scrape_images(
            params=ScrapeParams(**params.scrape.model_dump(), pages=pages, label=label, **run)
        )
        result.scraped.append(scraped)
        result.scrape_manifest_paths[label] = scraped.manifest_path
        result.raw_dirs[label] = scraped.raw_dir
    result.stages_run.append("scrape_images")
    return str(Layout.at(result.data_dir).root / "raw")


def _curate(params: PipelineParams, source_dir: str | None, result: PipelineResult) -> None:
    """Flag off-topic and mislabeled images of the folder prepare will read; with
    curate=exclude, prepare leaves them out. A check whose weights are missing is skipped."""
    name = "curate_images"
    if params.curate == "off" or not source_dir or params.dataset_dir:
        result.stages_skipped[name] = "curate off" if params.curate == "off" else "no images"
        return
    options = params.curation.model_dump()
    if options["label_issues"]:
        try:
            feature_spec(
                options["features"], options["feature_weights"], options["alpha"],
                options["feature_size"],
            )  # fmt: skip
        except WeightsNotFoundError as e:
            options["label_issues"] = False
            result.notes.append(f"Label-issue check skipped: {e}")
    if not options["expect"] and not options["label_issues"]:
        result.stages_skipped[name] = "no check to run (give --expect, or feature weights)"
        return
    labels = list(result.raw_dirs) or None  # the labels scraped: raw/ may hold others too
    curated = curate_images(
        params=CurateParams(
            **options, source_dir=source_dir, labels=labels, data_dir=result.data_dir,
            run_id=result.run_id,
        )
    )  # fmt: skip
    result.curated = curated
    result.curation_path = curated.curation_path
    result.stages_run.append(name)


def _prepare(params: PipelineParams, source_dir: str | None, result: PipelineResult) -> None:
    if params.dataset_dir:
        result.dataset_dir = str(Path(params.dataset_dir).resolve())
        result.stages_skipped["prepare_dataset"] = "dataset_dir given"
        return
    if not source_dir:
        result.stages_skipped["prepare_dataset"] = "nothing to prepare (model_path and inputs)"
        return
    options = params.prepare.model_dump()
    if params.curate == "exclude" and result.curation_path:
        options["exclude_curation"] = result.run_id
    if result.raw_dirs and not options["labels"]:
        options["labels"] = list(result.raw_dirs)  # the labels scraped: raw/ may hold others
    prepared = prepare_dataset(
        params=PrepareParams(
            **options, source_dir=source_dir, data_dir=result.data_dir, run_id=result.run_id
        )
    )
    result.prepared = prepared
    result.dataset_dir = prepared.dataset_dir
    result.dataset_manifest_path = prepared.manifest_path
    result.class_names = list(prepared.class_names)
    result.stages_run.append("prepare_dataset")


def _train(params: PipelineParams, result: PipelineResult) -> None:
    if params.model_path:
        result.model_path = str(Path(params.model_path).resolve())
        result.stages_skipped["train_classifier"] = "model_path given"
        return
    trained = train_classifier(
        params=TrainParams(
            **params.train.model_dump(),
            dataset_dir=result.dataset_dir,
            data_dir=result.data_dir,
            run_id=result.run_id,
        )
    )
    result.model_path = trained.model_path
    result.model_card_path = trained.model_card_path
    result.history_path = trained.history_path
    result.best_val_accuracy = trained.best_val_accuracy
    result.stages_run.append("train_classifier")


def _promote(params: PipelineParams, result: PipelineResult) -> None:
    """Tonight's model against the dataset's champion; predictions then use the champion."""
    result.predicted_with = result.model_path
    if "train_classifier" not in result.stages_run:
        result.stages_skipped["promote_model"] = "no model trained in this run"
        return
    if params.promote == "never":
        result.stages_skipped["promote_model"] = "promote=never: predicting with this run's model"
        return
    always = params.promote == "always"
    promoted = promote_model(
        params=PromoteParams(
            **params.promotion.model_dump(),
            run_id=result.run_id,
            data_dir=result.data_dir,
            force=always,
            reason="promote=always in the pipeline" if always else None,
        )
    )
    result.decision, result.decision_reason = promoted.decision, promoted.reason
    result.champion_run = promoted.champion_run
    result.predicted_with = promoted.champion_model_path
    result.stages_run.append("promote_model")


def _predict(
    params: PipelineParams, result: PipelineResult, model: str, weights: str | None, run_id: str
) -> str:
    options = params.predict.model_dump()
    if not options["inputs"]:  # default: the held-back split of the dataset
        options.pop("inputs")
        options["dataset_dir"] = result.dataset_dir
    predicted = predict_batch(
        params=PredictParams(
            **options,
            model=model,
            weights=weights,
            targets=params.targets if weights is None else params.imagenet_targets,
            data_dir=result.data_dir,
            run_id=run_id,
        )
    )
    result.predicted.append(predicted)
    return predicted.predictions_path


def _predict_all(params: PipelineParams, result: PipelineResult) -> None:
    model = result.predicted_with or result.model_path
    result.predictions_path = _predict(params, result, model, None, result.run_id)
    result.stages_run.append("predict_batch")
    imagenet = "predict_batch (resnet50 imagenet)"
    if not params.imagenet_weights:
        result.stages_skipped[imagenet] = "imagenet_weights not given"
        return
    # predict_batch replaces every prediction of the run id it is given, so the ImageNet model
    # writes under its own id; the report shows the trained model's.
    result.imagenet_predictions_path = _predict(
        params, result, "resnet50", params.imagenet_weights, f"{result.run_id}-imagenet"
    )
    result.stages_run.append(imagenet)


def _report(params: PipelineParams, result: PipelineResult) -> None:
    # A model from another run: the report reads that run's training history and card.
    model_dir = Path(result.model_path).parent
    from_elsewhere = params.model_path and model_dir.parent.name == "models"
    reported = write_report(
        params=ReportParams(
            run_id=result.run_id,
            title=params.report_title,
            notes=params.report_notes + result.notes,
            data_dir=result.data_dir,
            train_run=model_dir.name if from_elsewhere else None,
        )
    )
    result.report_path = reported.report_path
    result.stages_run.append("write_report")


@gated_flow(
    name="image-pipeline",
    description="Scrape pages, prepare a dataset, train a classifier, promote it when better"
    " than the champion, predict with the champion, and report.",
    validate_parameters=True,
)
def image_pipeline(params: PipelineParams) -> PipelineResult:
    """Run the stages as subflows under one run id; a stage whose input is given is skipped."""
    run_id = safe_name(params.run_id, "run id") if params.run_id else new_run_id()
    data_dir = str(Layout.at(params.data_dir).root)
    classes = check_inputs(params)  # fail before any stage runs
    log = logger()
    log.info("pipeline run %s, data root %s", run_id, data_dir)
    result = PipelineResult(run_id=run_id, data_dir=data_dir, class_names=classes or [])
    source_dir = _scrape(params, result)
    _curate(params, source_dir, result)
    _prepare(params, source_dir, result)
    _train(params, result)
    _promote(params, result)
    _predict_all(params, result)
    _report(params, result)
    log.info("pipeline run %s done: %s", run_id, ", ".join(result.stages_run))
    return result
