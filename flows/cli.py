"""The `pixelpipe` command: one subcommand per flow, options generated from flows/params/."""

from __future__ import annotations

import enum
import inspect
import json
import os
import sys
import types
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import typer
import yaml
from pydantic import BaseModel, ValidationError

from flows import params as P
from flows.demo import DemoOptions
from storage.errors import NotAvailableError, PixelpipeError

app = typer.Typer(
    name="pixelpipe",
    help="Web pages full of pictures -> trained image classifiers and batch predictions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Subcommand name -> handler(params); looked up at call time so tests can swap a handler.
_HANDLERS: dict[str, Callable[[Any], None]] = {}

# Nested models (TrainParams.augmentation) become prefixed options: --augmentation-rotation-range.
_SEP = "__"


def _option_type(annotation: Any) -> Any:
    """The Python type Typer understands for a field (Literal choices become a str Enum)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return _option_type(inner[0]) if len(inner) == 1 else str
    if origin is typing.Annotated:  # a constrained str (flows.params.Name): the str itself
        return _option_type(args[0])
    if origin is Literal:
        return enum.Enum("Choice", {str(a): str(a) for a in args}, type=str)
    if origin is list:  # list[Literal[...]] (TrainParams.export) becomes a list of choices
        return list[_option_type(args[0])]
    if origin is tuple:
        return tuple[args]
    return annotation


def _flatten(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    """(flat name, field info) for every leaf field; nested models are expanded."""
    leaves = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            leaves += _flatten(annotation, f"{prefix}{name}{_SEP}")
        else:
            leaves.append((prefix + name, field))
    return leaves


def _flag(flat: str, leaf_counts: Counter[str]) -> str:
    """`--rotation-range` for a nested leaf whose name is unique, else `--augmentation-...`."""
    leaf = flat.split(_SEP)[-1]
    name = leaf if leaf_counts[leaf] == 1 else flat.replace(_SEP, "_")
    return "--" + name.replace("_", "-")


def _parameters(model: type[BaseModel]) -> list[inspect.Parameter]:
    """One keyword-only option per leaf field. Every option defaults to None ("not given") so
    the model, not the CLI, supplies defaults, and a --params file is not overridden by them."""
    leaves = _flatten(model)
    leaf_counts = Counter(flat.split(_SEP)[-1] for flat, _ in leaves)
    parameters = []
    for flat, field in leaves:
        py_type = _option_type(field.annotation)
        flag = _flag(flat, leaf_counts)
        if py_type is bool:
            flag = f"{flag}/--no-{flag[2:]}"
        if field.is_required():
            note = " [required]"
        else:
            default = field.get_default(call_default_factory=True)
            note = "" if default is None else f" (default: {_show(default)})"  # [..] is markup
        option = typer.Option(None, flag, help=(field.description or "") + note, show_default=False)
        parameters.append(
            inspect.Parameter(
                flat, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=py_type | None
            )
        )
    return parameters


def _show(default: Any) -> str:
    if isinstance(default, bool):
        return "yes" if default else "no"
    if isinstance(default, list | tuple):
        return " ".join(map(str, default)) or "none"
    return str(default)


def _unflatten(values: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for flat, value in values.items():
        *parents, leaf = flat.split(_SEP)
        target = nested
        for parent in parents:
            target = target.setdefault(parent, {})
        if isinstance(value, enum.Enum):
            value = value.value
        if isinstance(value, list):
            value = [v.value if isinstance(v, enum.Enum) else v for v in value]
        target[leaf] = list(value) if isinstance(value, tuple) else value
    return nested


def _load_params_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) if path.suffix in {".yaml", ".yml"} else None
        data = data if data is not None else json.loads(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise PixelpipeError(f"cannot read parameters from {path}: {e}") from e
    if not isinstance(data, dict):
        raise PixelpipeError(f"{path} must hold a mapping of parameter names to values")
    return data


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def fail(message: str, code: int = 1) -> typing.NoReturn:
    typer.echo(f"pixelpipe: error: {message}", err=True)
    raise typer.Exit(code)


def explain(error: ValidationError, flags: dict[str, str] | None = None) -> str:
    """One readable line per pydantic problem: `--epochs: Input should be >= 1`."""
    flags = flags or {}
    lines = []
    for problem in error.errors():
        flat = _SEP.join(str(p) for p in problem["loc"])
        where = flags.get(flat, "--" + flat.replace(_SEP, "-").replace("_", "-"))
        lines.append(f"{where}: {problem['msg']}" if problem["loc"] else problem["msg"])
    return "invalid parameters:\n  " + "\n  ".join(lines)


def params_command(name: str, model: type[BaseModel], help: str) -> Callable:
    """Register `handler(params: model)` as a subcommand with one option per model field.

    Options given on the command line override values from `--params FILE` (YAML or JSON),
    which override the model's defaults.
    """

    def register(handler: Callable[[Any], None]) -> Callable[[Any], None]:
        def command(**values: Any) -> None:
            params_file = values.pop("params_file")
            given = {k: v for k, v in values.items() if v is not None and v != []}
            try:
                base = _load_params_file(params_file) if params_file else {}
                parsed = model.model_validate(_merge(base, _unflatten(given)))
            except ValidationError as e:
                fail(
                    explain(e, {p.name: p.default.param_decls[0].split("/")[0] for p in options}),
                    code=2,
                )
            except PixelpipeError as e:
                fail(str(e))
            try:
                _HANDLERS[name](parsed)
            except PixelpipeError as e:
                fail(str(e))

        params_file = inspect.Parameter(
            "params_file",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Path | None,
            default=typer.Option(None, "--params", help="YAML or JSON file of parameters"),
        )
        options = _parameters(model)
        parameters = [params_file, *options]
        command.__signature__ = inspect.Signature(parameters)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        command.__doc__ = help
        app.command(name, help=help)(command)
        _HANDLERS[name] = handler
        return handler

    return register


def not_available(issue: str) -> typing.NoReturn:
    raise NotAvailableError(f"not available yet: {issue} has not landed in this version")


@params_command("scrape", P.ScrapeParams, "Find and download every image on some pages.")
def scrape(params: P.ScrapeParams) -> None:
    from flows.scrape_images import scrape_images

    result = scrape_images(params=params)
    typer.echo(result.summary())
    typer.echo(f"manifest {result.manifest_path}")


@params_command("curate", P.CurateParams, "Flag off-topic and mislabeled images (moves nothing).")
def curate(params: P.CurateParams) -> None:
    from flows.curate_images import curate_images

    result = curate_images(params=params)
    typer.echo(result.summary())
    flagged = ", ".join(f"{label}={n}" for label, n in result.flagged.items()) or "none"
    typer.echo(f"flagged: {flagged} (pixelpipe prepare --exclude-curation {result.run_id})")
    typer.echo(f"curation {result.curation_path}")


@params_command("prepare", P.PrepareParams, "Clean, resize and split images into train/val.")
def prepare(params: P.PrepareParams) -> None:
    from flows.prepare_dataset import prepare_dataset

    result = prepare_dataset(params=params)
    typer.echo(f"dataset {result.dataset_dir} ({', '.join(result.class_names)})")
    for split, per_class in result.counts.items():
        typer.echo(f"  {split:<5} " + "  ".join(f"{c}={n}" for c, n in per_class.items()))
    skipped = ", ".join(f"{k}={v}" for k, v in result.skipped.items()) or "none"
    typer.echo(f"rendered {result.rendered}, reused {result.reused}, skipped: {skipped}")
    typer.echo(f"manifest {result.manifest_path} (run {result.run_id})")


@params_command("train", P.TrainParams, "Train a classifier on a prepared dataset.")
def train(params: P.TrainParams) -> None:
    from flows.train_classifier import train_classifier

    r = train_classifier(params=params)
    typer.echo(
        f"run {r.run_id}: {r.model}, {r.epochs_run} epochs, best epoch {r.best_epoch} "
        f"val_accuracy {r.best_val_accuracy} (evaluated {r.evaluated_val_accuracy})"
    )
    typer.echo(f"model {r.model_path}\ncard  {r.model_card_path}\nhistory {r.history_path}")


@params_command(
    "augment-preview", P.AugmentPreviewParams, "Write a PNG grid of augmented training images."
)
def augment_preview(params: P.AugmentPreviewParams) -> None:
    from tasks.train.augment import augment_preview as preview

    out = preview(
        params.dataset_dir, params.augmentation, params.out, n=params.variants,
        images=params.images, seed=params.seed, image_size=params.image_size,
    )  # fmt: skip
    typer.echo(out)


@params_command("predict", P.PredictParams, "Classify many images; write Parquet predictions.")
def predict(params: P.PredictParams) -> None:
    from flows.predict_batch import predict_batch, results_table

    result = predict_batch(params=params)
    typer.echo(results_table(result))


@params_command("report", P.ReportParams, "Write the HTML/Markdown report of a run.")
def report(params: P.ReportParams) -> None:
    from flows.write_report import write_report

    result = write_report(params=params)
    typer.echo(result.report_path)


@params_command(
    "run", P.PipelineParams, "Run the whole pipeline: scrape, prepare, train, predict, report."
)
def run(params: P.PipelineParams) -> None:
    from flows.image_pipeline import check_inputs, image_pipeline, summary_lines

    check_inputs(params)  # the flow checks again; here a mistake costs no failed flow run
    result = image_pipeline(params=params)
    typer.echo("\n".join(summary_lines(result)))


@params_command("demo", DemoOptions, "Run the whole pipeline offline on generated pictures.")
def demo(options: DemoOptions) -> None:
    from flows.demo import run_demo

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
    cron: str = typer.Option("0 3 * * *", "--cron", help="The pipeline's cron schedule"),
    timezone: str = typer.Option("UTC", "--timezone", help="Time zone of the cron schedule"),
) -> None:
    import importlib.util

    # deployments/ sits beside the installed packages (pip install -e .), not inside them.
    path = Path(__file__).resolve().parent.parent / "deployments" / "serve.py"
    spec = importlib.util.spec_from_file_location("pixelpipe_serve", path)
    if spec is None or not path.is_file():
        fail(f"{path} is missing: run pixelpipe serve from a checkout (pip install -e .)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.serve(Path(params_file) if params_file else None, cron, timezone)
    except ValidationError as e:
        fail(f"{params_file}: " + explain(e), code=2)
    except PixelpipeError as e:
        fail(str(e))


@app.command("tables", help="List the warehouse tables with their row and run counts.")
def tables(
    data_dir: str | None = typer.Option(None, "--data-dir", help="Data root"),
) -> None:
    from storage.parquet import table_counts

    counts = _guard(lambda: table_counts(data_dir))
    typer.echo(f"{'table':<18} {'rows':>10} {'runs':>6}")
    for name, (rows, runs) in counts.items():
        typer.echo(f"{name:<18} {rows:>10} {runs:>6}")


@app.command("show", help="Print rows of a warehouse table.")
def show(
    table: str = typer.Argument(..., help="Table name (see `pixelpipe tables`)"),
    run: str | None = typer.Option(None, "--run", help="Only this run id"),
    limit: int = typer.Option(20, "--limit", min=1, help="Rows to print"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Data root"),
) -> None:
    import pandas as pd

    from storage.parquet import read_table

    frame = _guard(lambda: read_table(table, data_dir=data_dir, run_id=run))
    if frame.empty:
        typer.echo(f"{table}: no rows" + (f" for run {run}" if run else ""))
        return
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60
    ):
        typer.echo(frame.head(limit).to_string(index=False))
    typer.echo(f"({min(limit, len(frame))} of {len(frame)} rows)")


def _guard(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except PixelpipeError as e:
        fail(str(e))


def main() -> None:
    # Without a Prefect server, a flow starts a temporary one. Prefect gives it 20 s, which a
    # first start (database migrations) on a busy 2-core machine can exceed; and its
    # telemetry only logs failures on an offline machine. A user's own settings still win.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    app()


if __name__ == "__main__":
    sys.exit(main())
