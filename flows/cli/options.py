"""The Typer app of `pixelpipe`, and the generator that turns a pydantic parameter model into a
subcommand with one option per field (nested models become prefixed options)."""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click
import typer
import yaml
from pydantic import BaseModel, ValidationError
from typer.core import TyperCommand

from storage.errors import PixelpipeError

app = typer.Typer(
    name="pixelpipe",
    help="Web pages full of pictures -> trained image classifiers and batch predictions.\n\n"
    "The pipeline (`pixelpipe run`, or each stage alone): scrape -> curate -> prepare"
    " (train/val/test splits) -> train -> promote -> predict -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: it wraps at the terminal's width (rich's tables left ~17 columns
    # for descriptions at 80), and GroupedCommand keeps the options grouped by stage.
    rich_markup_mode=None,
)


class GroupedCommand(TyperCommand):
    """Plain help with the options in sections by their panel (a pipeline's stages)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                panel = getattr(param, "rich_help_panel", None) or "Options"
                sections.setdefault(panel, []).append(record)
        for name, rows in sections.items():
            with formatter.section(name):
                formatter.write_dl(rows)


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


def _parameters(model: type[BaseModel], shown: set[str] | None = None) -> list[inspect.Parameter]:
    """One keyword-only option per leaf field. Every option defaults to None ("not given") so
    the model, not the CLI, supplies defaults, and a --params file is not overridden by them.
    A nested model's options form a section of the help named after it; with `shown`, only
    those nested options are listed (all still work)."""
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
        group = flat.split(_SEP)[0] if _SEP in flat else None
        option = typer.Option(
            None, flag, help=(field.description or "") + note, show_default=False,
            rich_help_panel=f"{group.capitalize()} options" if group else None,
            hidden=bool(group and shown is not None and flat not in shown),
        )  # fmt: skip
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


def params_command(
    name: str,
    model: type[BaseModel],
    help: str,
    shown: set[str] | None = None,
    epilog: str | None = None,
) -> Callable:
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
        options = _parameters(model, shown)
        parameters = [params_file, *options]
        command.__signature__ = inspect.Signature(parameters)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        command.__doc__ = help
        app.command(name, help=help, epilog=epilog, cls=GroupedCommand)(command)
        _HANDLERS[name] = handler
        return handler

    return register
