"""Serve pixelpipe's deployments from one process (`pixelpipe serve`): no work pool or worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.curate_images import curate_images
from flows.gate.policy import ServePolicy
from flows.image_pipeline import image_pipeline
from flows.params import PipelineParams
from flows.predict_batch import predict_batch
from flows.prepare_dataset import prepare_dataset
from flows.promote_model import promote_model
from flows.scrape_images import scrape_images
from flows.train_classifier import train_classifier
from flows.write_report import write_report
from storage.layout import resolve_data_dir

DEPLOYMENT = "local"  # every served flow's deployment: 'image-pipeline/local', ...; the
# work-pool ones from prefect.yaml are named 'pixelpipe', so both can live on one server.
DEFAULT_CRON = "0 3 * * *"  # nightly re-scrape and retrain, 03:00

# flow module (and function) -> (description, tags); the same set as deployments/prefect.yaml.
FLOWS: dict[str, tuple[Flow, str, list[str]]] = {
    "image_pipeline": (
        image_pipeline,
        "Scrape, prepare, train, predict and report in one run.",
        ["pipeline"],
    ),
    "scrape_images": (
        scrape_images,
        "Find, download, validate and dedupe the images on some pages.",
        ["scrape"],
    ),
    "curate_images": (
        curate_images,
        "Flag off-topic and mislabeled images (moves nothing).",
        ["curate"],
    ),
    "prepare_dataset": (
        prepare_dataset,
        "Clean, resize and split images into train/val folders.",
        ["prepare"],
    ),
    "train_classifier": (
        train_classifier,
        "Train a Keras classifier on a prepared dataset.",
        ["train"],
    ),
    "promote_model": (
        promote_model,
        "Challenge a dataset's champion with a trained model.",
        ["registry"],
    ),
    "predict_batch": (
        predict_batch,
        "Classify many images; write Parquet predictions.",
        ["predict"],
    ),
    "write_report": (write_report, "Write the HTML/Markdown report of a run.", ["report"]),
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
    for name, (flow, description, tags) in FLOWS.items():
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


def pipeline_defaults(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """Validated default parameters of the pipeline deployment (read by the CLI from --params)."""
    if values is None:
        return None
    params = PipelineParams.model_validate(values)
    return params.model_dump(mode="json", exclude_defaults=True)


def serve_policy(
    data_dir: str | None = None, roots: Sequence[str] = (), dask: Sequence[str] = ()
) -> ServePolicy:
    """The policy of served runs: options win over $PIXELPIPE_ALLOWED_ROOTS / _DASK; the data
    root is always allowed. Relative roots are taken from the current folder, like --data-dir."""
    current = ServePolicy.from_env()
    root = resolve_data_dir(data_dir)
    extra = [str(Path(r).expanduser().resolve()) for r in roots]
    extra = extra or [str(r) for r in current.roots[1:]]
    return ServePolicy.of(root, extra, dask or current.dask)


def serve(
    defaults: dict[str, Any] | None = None,
    cron: str = DEFAULT_CRON,
    timezone: str = "UTC",
    policy: ServePolicy | None = None,
    echo: Callable[[str], Any] = print,
) -> None:
    """Register every deployment and run their flow runs here until interrupted."""
    from prefect import serve as prefect_serve

    policy = policy or serve_policy()
    params = pipeline_defaults(defaults)
    if params:  # a scheduled run would be refused every night: say so now
        policy.check(PipelineParams.model_validate(params))
    # Flow runs are child processes of this one and inherit its environment: the policy
    # travels there (flows/gate/policy.py reads it back), pinned to absolute paths.
    os.environ.update(policy.environ())
    echo(f"served runs: {policy.describe()}")
    prefect_serve(*build_deployments(params, cron, timezone))


if __name__ == "__main__":
    serve()
