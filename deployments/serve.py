"""Serve pixelpipe's deployments from one process (`pixelpipe serve`): no work pool or worker."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

DEPLOYMENT = "local"  # every served flow's deployment: 'image-pipeline/local', ...; the
# work-pool ones from prefect.yaml are named 'pixelpipe', so both can live on one server.
DEFAULT_CRON = "0 3 * * *"  # nightly re-scrape and retrain, 03:00

# flow module (and function) -> (description, tags); the same set as deployments/prefect.yaml.
FLOWS: dict[str, tuple[str, list[str]]] = {
    "image_pipeline": ("Scrape, prepare, train, predict and report in one run.", ["pipeline"]),
    "scrape_images": ("Find, download, validate and dedupe the images on some pages.", ["scrape"]),
    "prepare_dataset": ("Clean, resize and split images into train/val folders.", ["prepare"]),
    "train_classifier": ("Train a Keras classifier on a prepared dataset.", ["train"]),
    "promote_model": ("Challenge a dataset's champion with a trained model.", ["registry"]),
    "predict_batch": ("Classify many images; write Parquet predictions.", ["predict"]),
    "write_report": ("Write the HTML/Markdown report of a run.", ["report"]),
}
# Flows that train: one run at a time per deployment, so two scheduled runs never train at
# once on one machine; a run arriving meanwhile waits in the queue (ENQUEUE).
ONE_AT_A_TIME = {"image_pipeline", "train_classifier"}


def build_deployments(
    pipeline_defaults: dict[str, Any] | None = None,
    cron: str = DEFAULT_CRON,
    timezone: str = "UTC",
) -> list[Any]:
    """A RunnerDeployment per flow; the pipeline's carries the cron schedule.

    The schedule is active only when `pipeline_defaults` say what to scrape or train on: a
    nightly run with nothing to start from would fail every night.
    """
    deployments = []
    for name, (description, tags) in FLOWS.items():
        flow = getattr(importlib.import_module(f"flows.{name}"), name)
        options: dict[str, Any] = {}
        if name == "image_pipeline":
            options["schedules"] = [Cron(cron, timezone=timezone, active=bool(pipeline_defaults))]
            if pipeline_defaults:
                options["parameters"] = {"params": pipeline_defaults}
        if name in ONE_AT_A_TIME:
            options["concurrency_limit"] = ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
            )
        deployments.append(
            flow.to_deployment(
                DEPLOYMENT,
                description=description,
                tags=["pixelpipe", *tags],
                # The installed package, not a file path: runs work from any folder.
                entrypoint_type=EntrypointType.MODULE_PATH,
                **options,
            )
        )
    return deployments


def pipeline_defaults_from(path: Path | None) -> dict[str, Any] | None:
    """Validated default parameters of the pipeline deployment, read from a YAML/JSON file."""
    if path is None:
        return None
    from flows.cli import _load_params_file
    from flows.params import PipelineParams

    params = PipelineParams.model_validate(_load_params_file(path))
    return params.model_dump(mode="json", exclude_defaults=True)


def serve(params_file: Path | None = None, cron: str = DEFAULT_CRON, timezone: str = "UTC") -> None:
    """Register every deployment and run their flow runs here until interrupted."""
    from prefect import serve as prefect_serve

    prefect_serve(*build_deployments(pipeline_defaults_from(params_file), cron, timezone))


if __name__ == "__main__":
    serve()
