"""The `pixelpipe` command: one subcommand per flow, options generated from flows/params/."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import typing
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from flows import params as P
from flows.cli import output
from flows.cli import tables as table_commands
from flows.cli.demo import DemoOptions
from flows.cli.options import _load_params_file, app, explain, fail, params_command
from flows.cli.registry import register as register_registry_commands
from flows.cli.server import loopback_bypasses_proxies, prefect_api, server_app
from storage.errors import PixelpipeError

app.add_typer(server_app, name="server")
_verbosity = {"verbose": False, "quiet": False}  # set by -v / -q, read when a flow runs
# The start-up imports (Prefect, pandas, pyarrow; TensorFlow for some commands) make millions
# of objects that live as long as the process; Python's collector walked them again and again
# while they were made: ~10% of the imports' CPU time (measured, bench/bench_cli_prompt.py).
# main() makes collections rare until the flow starts, then puts Python's default back.
_GC_DEFAULT = gc.get_threshold()
_GC_STARTING = (100_000, 50, 1000)


@app.callback()
def options(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        show_default=False,
        help="Show every log line, TensorFlow's too, and tracebacks",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", show_default=False, help="Print the summary and errors only"
    ),
) -> None:
    _verbosity.update(verbose=verbose, quiet=quiet and not verbose)
    if not verbose:
        quiet_libraries()


def quiet_libraries() -> None:
    """TensorFlow's log lines (CUDA probing on a CPU machine, its Python warnings) off the
    console; set before TensorFlow is imported, as its C++ logging reads the environment once.
    A user's own setting wins."""
    # 3, not 2: "failed call to cuInit" on a CPU-only machine is an error-level line. What
    # goes wrong in TensorFlow still raises a Python exception, printed as one line (or -v).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with fd 2 on /dev/null unless -v: its shared libraries write their
    start-up lines (oneDNN, CUDA probing) before its logging reads TF_CPP_MIN_LOG_LEVEL. A
    failed import is left to the flow's own import, which raises it again, visibly."""
    if _verbosity["verbose"] or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            with contextlib.suppress(ImportError):
                import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def checked(command: str, params: Any, tensorflow: bool = True) -> Any:
    """`latest` resolved, and the command's checks that need no model or server run, before
    TensorFlow or Prefect are imported (flows.cli.checks)."""
    # deferred: CLI start-up (pandas and pyarrow, which `--help` does not need)
    from flows.cli import checks

    params = checks.resolve_latest(command, params)
    check = checks.CHECKS.get(command)
    if check is not None:
        check(params)
    if tensorflow:  # after the checks: a mistake costs no TensorFlow start-up
        import_tensorflow_quietly()
    return params


def flow_session() -> AbstractContextManager[None]:
    """Around a flow call: the Prefect API to use, the terminal bar, one-line errors."""
    # deferred: CLI start-up (Prefect takes ~1 s to import, like the flows)
    from flows.cli.session import flow_session as session

    echo = (lambda _: None) if _verbosity["quiet"] else typer.echo  # -q: no server hint either
    if gc.get_threshold() == _GC_STARTING:  # main() started us: the imports are done
        gc.freeze()  # what they made stays for the process's life: left out of collections
        gc.set_threshold(*_GC_DEFAULT)
    return session(echo=echo, verbose=_verbosity["verbose"], quiet=_verbosity["quiet"])


@params_command("scrape", P.ScrapeParams, "Find and download every image on some pages.")
def scrape(params: P.ScrapeParams) -> None:
    # deferred: CLI start-up (the flow loads Prefect, pandas and maybe TensorFlow)
    from flows.scrape_images import scrape_images

    with flow_session():
        result = scrape_images(params=params)
    typer.echo(output.scrape_summary(result))
    typer.echo(f"manifest {result.manifest_path}")


@params_command("curate", P.CurateParams, "Flag off-topic and mislabeled images (moves nothing).")
def curate(params: P.CurateParams) -> None:
    params = checked("curate", params)
    # deferred: CLI start-up (the flow loads Prefect, pandas and TensorFlow)
    from flows.curate_images import curate_images

    with flow_session():
        result = curate_images(params=params)
    typer.echo(output.curate_summary(result))
    flagged = ", ".join(f"{label}={n}" for label, n in result.flagged.items()) or "none"
    typer.echo(f"flagged: {flagged} (pixelpipe prepare --exclude-curation {result.run_id})")
    typer.echo(f"curation {result.curation_path}")


@params_command("prepare", P.PrepareParams, "Clean, resize and split images into train/val/test.")
def prepare(params: P.PrepareParams) -> None:
    params = checked("prepare", params, tensorflow=False)
    # deferred: CLI start-up (the flow loads Prefect, pandas and maybe TensorFlow)
    from flows.prepare_dataset import prepare_dataset

    with flow_session():
        result = prepare_dataset(params=params)
    typer.echo("\n".join(output.prepare_summary(result)))


@params_command("train", P.TrainParams, "Train a classifier on a prepared dataset.")
def train(params: P.TrainParams) -> None:
    params = checked("train", params)
    # deferred: CLI start-up (the flow loads Prefect, pandas and maybe TensorFlow)
    from flows.train_classifier import train_classifier

    with flow_session():
        r = train_classifier(params=params)
    typer.echo("\n".join(output.train_summary(r)))


# Here, so the help lists the commands in the pipeline's order: promote comes after train.
register_registry_commands(params_command, flow_session, checked)  # promote, models, rollback


@params_command(
    "augment-preview", P.AugmentPreviewParams, "Write a PNG grid of augmented training images."
)
def augment_preview(params: P.AugmentPreviewParams) -> None:
    import_tensorflow_quietly()
    # deferred: TensorFlow, for CLI start-up
    from tasks.train.augment import augment_preview as preview

    out = preview(
        params.dataset_dir, params.augmentation, params.out, n=params.variants,
        images=params.images, seed=params.seed, image_size=params.image_size,
    )  # fmt: skip
    typer.echo(out)


@params_command("predict", P.PredictParams, "Classify many images; write Parquet predictions.")
def predict(params: P.PredictParams) -> None:
    params = checked("predict", params)
    # deferred: CLI start-up (the flow loads TensorFlow)
    from flows.predict_batch import predict_batch

    with flow_session():
        result = predict_batch(params=params)
    typer.echo(output.predict_table(result))


@params_command("report", P.ReportParams, "Write the HTML/Markdown report of a run.")
def report(params: P.ReportParams) -> None:
    params = checked("report", params)  # an unknown run id fails here, not as an empty report
    # deferred: CLI start-up (the flow loads Prefect, pandas and maybe TensorFlow)
    from flows.write_report import write_report

    with flow_session():
        result = write_report(params=params)
    typer.echo(result.report_path)


# What `run --help` lists of each stage; every other stage option works too (see the epilog).
RUN_SHOWN = {
    "scrape__max_images", "scrape__allow_private_networks", "curation__expect",
    "prepare__image_size", "prepare__val_fraction", "prepare__test_fraction", "train__model",
    "train__epochs", "predict__top_k", "promotion__min_improvement",
}  # fmt: skip
RUN_EPILOG = (
    "Each stage takes all its own options here too (e.g. --rotation-range, --timeout): see"
    " `pixelpipe scrape --help`, `curate`, `prepare`, `train`, `promote` and `predict --help`"
    " for them, or put them in a --params FILE (YAML: train: {epochs: 5})."
)


@params_command(
    "run", P.PipelineParams,
    "Run the whole pipeline: scrape -> curate -> prepare (train/val/test) -> train -> promote"
    " -> predict -> report. Give a later stage's input (--source-dir, --dataset-dir,"
    " --model-path) to start there.",
    shown=RUN_SHOWN, epilog=RUN_EPILOG,
)  # fmt: skip
def run(params: P.PipelineParams) -> None:
    params = checked("run", params)  # the flow checks again; here a mistake costs no flow run
    # deferred: CLI start-up (the flow loads Prefect, pandas and TensorFlow)
    from flows.image_pipeline import image_pipeline

    with flow_session():
        result = image_pipeline(params=params)
    typer.echo("\n".join(output.pipeline_summary(result)))


@params_command("demo", DemoOptions, "Run the whole pipeline offline on generated pictures.")
def demo(options: DemoOptions) -> None:
    import_tensorflow_quietly()
    # deferred: CLI start-up (the flow loads Prefect, pandas and maybe TensorFlow)
    from flows.cli.demo import run_demo

    with flow_session():
        result = run_demo(options, echo=typer.echo)
    accuracy = "n/a" if result.val_accuracy is None else f"{result.val_accuracy:.3f}"
    typer.echo(f"validation accuracy: {accuracy} (chance: 0.5)")
    typer.echo(f"report: {result.report_path}")
    typer.echo(f"demo run {result.run_id} took {result.seconds:.0f} s")


@app.command("serve", help="Serve the deployments (with schedules) from this process.")
def serve(
    params_file: str | None = typer.Option(
        None,
        "--params",
        help="YAML/JSON defaults of the pipeline deployment (activates the schedule)",
    ),
    cron: str = typer.Option(
        "0 3 * * *",
        "--cron",
        show_default=False,
        help="The pipeline's cron schedule (default: 0 3 * * *)",
    ),
    timezone: str = typer.Option(
        "UTC", "--timezone", show_default=False, help="Time zone of the cron (default: UTC)"
    ),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Data root of served runs (default $PIXELPIPE_DATA_DIR, ./data)"
    ),
    allow_root: typing.Annotated[
        list[str] | None,
        typer.Option(
            "--allow-root",
            help="Served runs may also read and write under this folder (repeat); default"
            " $PIXELPIPE_ALLOWED_ROOTS; the data root is always allowed",
        ),
    ] = None,
    allow_dask: typing.Annotated[
        list[str] | None,
        typer.Option(
            "--allow-dask",
            help="Dask scheduler served runs may use, tcp://host:8786 (repeat); default"
            " $PIXELPIPE_ALLOWED_DASK, else none",
        ),
    ] = None,
) -> None:
    # Deferred: deployments.serve imports Prefect and every flow (TensorFlow), which --help of
    # the other commands does not need.
    from deployments import serve as entry

    try:
        # Bad options fail before any server is looked for or started.
        defaults = _load_params_file(Path(params_file)) if params_file else None
        policy = entry.serve_policy(data_dir, allow_root or (), allow_dask or ())
        entry.checked_defaults(defaults, policy)
        with prefect_api(echo=typer.echo):  # $PREFECT_API_URL, else `pixelpipe server start`'s
            entry.serve(defaults, cron, timezone, policy, echo=typer.echo)
    except ValidationError as e:
        fail(f"{params_file}: " + explain(e), code=2)
    except PixelpipeError as e:
        fail(str(e))


table_commands.register()  # tables, show, runs


def main() -> None:
    # Without a Prefect server, a flow starts a temporary one. Prefect gives it 20 s, which a
    # first start (database migrations) on a busy 2-core machine can exceed; and its
    # telemetry only logs failures on an offline machine. A user's own settings still win.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    loopback_bypasses_proxies()  # before any client exists; the commands' children inherit it
    gc.set_threshold(*_GC_STARTING)  # until flow_session(): see _GC_STARTING
    try:
        app()
    finally:
        if "prefect" in sys.modules and not _verbosity["verbose"]:
            # deferred: CLI start-up (Prefect, loaded only when a command used it)
            from flows.cli.session import quiet_after_session

            # e.g. Prefect's "Stopping temporary server" at exit
            quiet_after_session(_verbosity["quiet"])
        # Python's last garbage collection at exit walks every object the imports made
        # (Prefect, pandas, TensorFlow): seconds on a busy 2-core machine between the summary
        # and the prompt. Frozen objects are left out of it (and still freed).
        gc.freeze()
