"""Flow parameters as pydantic models: validated up front, rendered as forms in the Prefect UI.

Each stage flow takes one model (`scrape_images(params=ScrapeParams(...))`, or a plain dict
of the same fields, which Prefect validates into the model before the run starts). The CLI
turns every field into an option, so this module is the one place a parameter is declared.
Keep it free of heavy imports: the CLI imports it to build `--help`.
"""

from flows.params.base import (
    DASK_INSTALL,
    OPENVINO_INSTALL,
    DatasetName,
    Label,
    LocalPath,
    ModelRef,
    Params,
    PathParam,
    RunId,
    Runner,
    StageParams,
    WeightsPath,
    check_runner,
)
from flows.params.curate import CurateParams
from flows.params.pipeline import (
    CurateOptions,
    PipelineParams,
    PredictOptions,
    PrepareOptions,
    ScrapeOptions,
    TrainOptions,
)
from flows.params.predict import PredictParams
from flows.params.prepare import PrepareParams
from flows.params.report import ReportParams
from flows.params.scrape import ScrapeParams
from flows.params.train import AugmentPreviewParams, TrainParams

__all__ = [
    "DASK_INSTALL",
    "OPENVINO_INSTALL",
    "AugmentPreviewParams",
    "CurateOptions",
    "CurateParams",
    "DatasetName",
    "Label",
    "LocalPath",
    "ModelRef",
    "Params",
    "PathParam",
    "PipelineParams",
    "PredictOptions",
    "PredictParams",
    "PrepareOptions",
    "PrepareParams",
    "ReportParams",
    "RunId",
    "Runner",
    "ScrapeOptions",
    "ScrapeParams",
    "StageParams",
    "TrainOptions",
    "TrainParams",
    "WeightsPath",
    "check_runner",
]
