"""image_pipeline's parameters: each stage's options, derived from the stage models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model, model_validator
from pydantic.fields import FieldInfo

from flows.params.base import (
    LocalPath,
    Params,
    RunId,
    Runner,
    StageParams,
    WeightsPath,
    check_runner,
)
from flows.params.curate import CurateParams
from flows.params.predict import PredictParams
from flows.params.prepare import PrepareParams
from flows.params.registry import PromoteParams
from flows.params.scrape import ScrapeParams
from flows.params.train import TrainParams
from storage.layout import safe_name

# --- image_pipeline (the parent flow) -------------------------------------------------------
# Each stage's options inside the pipeline are that stage's model minus what the pipeline
# decides itself (data root, run id, inputs wired from the previous stage). They are derived,
# not copied, so a field added to a stage model shows up in `pixelpipe run` automatically.


def _options_of(
    model: type[StageParams], name: str, drop: set[str], defaults: dict[str, Any] | None = None
) -> type[Params]:
    defaults = defaults or {}
    fields = {
        key: (field.annotation, _default(field, defaults[key]) if key in defaults else field)
        for key, field in model.model_fields.items()
        if key not in drop | {"data_dir", "run_id"}
    }
    return create_model(
        name, __base__=Params, __doc__=f"{model.__name__} inside a pipeline.", **fields
    )


def _default(field: FieldInfo, value: Any) -> FieldInfo:
    """The same field with another default (the pipeline's own choice for a stage option)."""
    return FieldInfo.merge_field_infos(field, default=value)


ScrapeOptions = _options_of(ScrapeParams, "ScrapeOptions", {"pages", "label"})
CurateOptions = _options_of(CurateParams, "CurateOptions", {"source_dir", "labels"})
# A test/ split by default: the registry scores tonight's model and the champion on it.
PrepareOptions = _options_of(
    PrepareParams, "PrepareOptions", {"source_dir"}, defaults={"test_fraction": 0.1}
)
TrainOptions = _options_of(TrainParams, "TrainOptions", {"dataset_dir", "resume_run"})
PredictOptions = _options_of(
    PredictParams, "PredictOptions", {"scrape_run", "dataset_dir", "model", "weights", "targets"}
)
PromoteOptions = _options_of(
    PromoteParams, "PromoteOptions", {"force", "reason", "batch_size", "lock_timeout_s"}
)


class PipelineParams(Params):
    """scrape -> prepare -> train -> promote -> predict -> report; give a later stage's input
    to skip."""

    data_dir: LocalPath | None = Field(
        None, description="Data root; default $PIXELPIPE_DATA_DIR, else ./data"
    )
    run_id: RunId | None = Field(None, description="One run id for every stage; default: a new one")
    sources: list[str] = Field(
        default_factory=list,
        description="Pages to scrape as LABEL=URL (repeat per page and label), "
        "e.g. mountain=https://example.com/alps.html",
    )
    source_dir: LocalPath | None = Field(
        None, description="Skip scraping: prepare this folder (one subfolder of images per class)"
    )
    dataset_dir: LocalPath | None = Field(
        None, description="Skip scraping and preparing: train on this prepared dataset"
    )
    model_path: LocalPath | None = Field(
        None, description="Skip training: predict with this trained best.keras"
    )
    targets: list[str] = Field(
        default_factory=list, description="Classes of the trained model to count as hits"
    )
    imagenet_weights: WeightsPath | None = Field(
        None,
        description="Also classify with ResNet50 ImageNet: 'imagenet' (Keras cache) or a local "
        ".h5 file; none skips that stage",
    )
    imagenet_targets: list[str] = Field(
        default_factory=lambda: ["banana"],
        description="ImageNet classes or WordNet ids to look for in the ResNet50 stage",
    )
    curate: Literal["flag", "exclude", "off"] = Field(
        "flag",
        description="Curation after scraping: flag (record off-topic / mislabeled images),"
        " exclude (and leave them out of the dataset), or off",
    )
    scrape: ScrapeOptions = Field(default_factory=ScrapeOptions, description="Scraping")
    curation: CurateOptions = Field(default_factory=CurateOptions, description="Curating")
    prepare: PrepareOptions = Field(default_factory=PrepareOptions, description="Preparing")
    train: TrainOptions = Field(default_factory=TrainOptions, description="Training")
    predict: PredictOptions = Field(default_factory=PredictOptions, description="Predicting")
    promote: Literal["auto", "always", "never"] = Field(
        "auto",
        description="After training: auto (promote when better than the dataset's champion),"
        " always (make it the champion), never (no registry; predict with this run's model)",
    )
    promotion: PromoteOptions = Field(
        default_factory=PromoteOptions, description="The promotion rule (promote=auto)"
    )
    report_title: str | None = Field(None, description="Report title")
    report_notes: list[str] = Field(
        default_factory=list, description="Lines under the report's title (e.g. a skipped stage)"
    )
    runner: Runner | None = Field(
        None,
        description="Where scrape, prepare and predict shards run (threads, processes or dask);"
        " default: each stage's own",
    )
    dask_address: str | None = Field(
        None, description="runner=dask: one scheduler (tcp://host:8786) for every stage"
    )

    @model_validator(mode="after")
    def _one_runner(self) -> PipelineParams:
        """A pipeline-wide runner replaces the stages' own, before their checks below."""
        check_runner(self.runner, self.dask_address)
        if self.runner is not None:
            for stage in (self.scrape, self.prepare, self.predict):
                stage.runner, stage.dask_address = self.runner, self.dask_address
        return self

    @model_validator(mode="after")
    def _inputs(self) -> PipelineParams:
        given = [n for n in ("sources", "source_dir", "dataset_dir") if getattr(self, n)]
        given += ["url_list"] if self.scrape.url_list else []
        if len(given) > 1:
            raise ValueError(
                f"give only one of sources, url_list, source_dir, dataset_dir (got {given})"
            )
        if not given and not (self.model_path and self.predict.inputs):
            raise ValueError(
                "nothing to start from: give sources (LABEL=URL), url_list, source_dir or"
                " dataset_dir, or model_path with predict inputs"
            )
        # The stage models' own cross-field checks, before any stage runs.
        if self.scrape.url_list:
            ScrapeParams(**self.scrape.model_dump())
        for label, pages in self.source_pages().items():  # also checks LABEL=URL
            ScrapeParams(**self.scrape.model_dump(), pages=pages, label=label)
        PrepareParams(**self.prepare.model_dump())
        if not self.model_path:
            train = self.train.model_dump()
            if train["image_size"] is None and not self.dataset_dir:  # trains at prepare's size
                train["image_size"] = self.prepare.image_size
            TrainParams(**train)
        PredictParams(**self.predict.model_dump())
        return self

    def source_pages(self) -> dict[str, list[str]]:
        """`sources` grouped by label, in the order given."""
        pages: dict[str, list[str]] = {}
        for entry in self.sources:
            label, sep, url = entry.partition("=")
            if not sep or not label.strip() or not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"source {entry!r} must look like LABEL=http(s)://host/page")
            label = safe_name(label.strip(), "label")  # it becomes raw/<label>/
            pages.setdefault(label, []).append(url.strip())
        return pages
