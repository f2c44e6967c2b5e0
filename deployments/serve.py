"""Serve pixelpipe's deployments from one process (`pixelpipe serve`): no work pool or worker."""

from __future__ import annotations

import os
import signal
import threading
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

# Deployment names say what they are: every flow `<flow>/on-demand` (run from the UI, the API
# or `prefect deployment run`), and the pipeline also `image-pipeline/nightly` (its cron
# schedule with the `--params` defaults) when there are defaults. The work-pool ones from
# prefect.yaml add `-worker`, so both kinds can live on one server.
ON_DEMAND = "on-demand"
NIGHTLY = "nightly"
DEFAULT_CRON = "0 3 * * *"  # nightly re-scrape and retrain, 03:00
PAUSE_TIMEOUT_S = 5.0  # per API call when serve stops: a server already gone is not waited for

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
    """A RunnerDeployment per flow (on demand), and with `pipeline_defaults` the pipeline's
    nightly one on the cron schedule. Without defaults there is no schedule at all: a nightly
    run with nothing to start from would fail every night, and an inactive schedule still
    shows its badge in the UI."""
    deployments = [_deployment(name, ON_DEMAND) for name in FLOWS]
    if pipeline_defaults:
        nightly = {"schedules": [Cron(cron, timezone=timezone)]}
        nightly["parameters"] = {"params": pipeline_defaults}
        deployments.append(_deployment("image_pipeline", NIGHTLY, **nightly))
    return deployments


def _deployment(name: str, deployment: str, **options: Any) -> Any:
    flow, description, tags = FLOWS[name]
    if deployment == NIGHTLY:
        description += " On its schedule, with the defaults `pixelpipe serve --params` gave."
    if name in ONE_AT_A_TIME:
        options["concurrency_limit"] = ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        )
    return flow.to_deployment(
        deployment,
        description=description,
        tags=["pixelpipe", *tags],
        # The installed package, not a file path: runs work from any folder.
        entrypoint_type=EntrypointType.MODULE_PATH,
        paused=False,  # a schedule paused when serve last stopped runs again
        **options,
    )


def schedule_line(defaults: dict[str, Any] | None, cron: str, timezone: str) -> str:
    """What `pixelpipe serve` says about the schedule, before serving."""
    if defaults:
        return f"schedule: image-pipeline/{NIGHTLY} runs at cron '{cron}' ({timezone}): active"
    return (
        "schedule: none (no --params): every deployment runs on demand; give --params FILE"
        f" (the pipeline's defaults) to serve image-pipeline/{NIGHTLY} at cron '{cron}'"
    )


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


def checked_defaults(defaults: dict[str, Any] | None, policy: ServePolicy) -> dict[str, Any] | None:
    """The pipeline's validated defaults, refused now if the policy would refuse the scheduled
    run every night."""
    params = pipeline_defaults(defaults)
    if params:
        policy.check(PipelineParams.model_validate(params))
    return params


def serve(
    defaults: dict[str, Any] | None = None,
    cron: str = DEFAULT_CRON,
    timezone: str = "UTC",
    policy: ServePolicy | None = None,
    echo: Callable[[str], Any] = print,
) -> None:
    """Register every deployment and run their flow runs here until interrupted; then pause
    the nightly schedule (if the server still answers), so nobody's runs pile up unserved."""
    from prefect import serve as prefect_serve

    policy = policy or serve_policy()
    params = checked_defaults(defaults, policy)
    # Flow runs are child processes of this one and inherit its environment: the policy
    # travels there (flows/gate/policy.py reads it back), pinned to absolute paths.
    os.environ.update(policy.environ())
    echo(f"served runs: {policy.describe()}")
    echo(schedule_line(params, cron, timezone))
    if not params:  # a nightly schedule an earlier `serve --params` left behind
        echo(pause_nightly())
    if threading.current_thread() is threading.main_thread():
        # Until Prefect's runner takes SIGTERM over (once serving), it would end the process
        # without the `finally` below: registering takes seconds.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        # Prefect's own pause on shutdown retries each call against a server that is gone
        # (`pixelpipe server stop` first): over a minute. pause_nightly gives up in seconds.
        prefect_serve(*build_deployments(params, cron, timezone), pause_on_shutdown=False)
    finally:
        if params:
            echo(pause_nightly())


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def pause_nightly() -> str:
    """Pause image-pipeline/nightly's schedule if the server answers and it runs; a line."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    name = f"image-pipeline/{NIGHTLY}"
    with (
        temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}),
        get_client(sync_client=True, httpx_settings={"timeout": PAUSE_TIMEOUT_S}) as client,
    ):
        if client.api_healthcheck() is not None:
            return f"schedule: the Prefect server is gone; {name} was not paused"
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            return f"schedule: no {name} on the server"
        if deployment.paused:
            return f"schedule: {name} is paused"
        client.pause_deployment(deployment.id)
    return f"schedule: paused {name} (`pixelpipe serve --params FILE` runs it again)"


if __name__ == "__main__":
    serve()
