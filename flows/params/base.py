"""What every parameter model shares: the base classes, checked names, path types, runner choice."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from storage.layout import NAME_MAX, NAME_PATTERN, safe_name

# The base of every settings model, and the path types the gate finds path values by.
from storage.params import LocalPath as LocalPath
from storage.params import ModelRef as ModelRef
from storage.params import PathParam as PathParam
from storage.params import Settings
from storage.params import WeightsPath as WeightsPath

Runner = Literal["threads", "processes", "dask"]
DASK_INSTALL = 'pip install -e ".[dask]"'  # the `dask` extra: prefect-dask, dask, distributed
OPENVINO_INSTALL = 'pip install -e ".[openvino]"'  # the `openvino` extra: openvino, nncf


def _name(what: str) -> Any:
    """A run id, label or dataset name: it becomes a folder or file name, so it is checked
    here, before any work and before anything is deleted (the pattern also guards the UI form)."""
    # safe_name decides (its message says what to change); the JSON schema carries the same
    # rule so the Prefect UI form refuses a bad name as it is typed.
    return Annotated[
        str,
        AfterValidator(partial(safe_name, what=what)),
        WithJsonSchema({"type": "string", "pattern": NAME_PATTERN, "maxLength": NAME_MAX}),
    ]


RunId = _name("run id")
Label = _name("label")
DatasetName = _name("dataset name")


class Params(Settings):
    """Base of every parameter model: unknown fields are errors, not silently ignored; optional
    fields render as plain inputs in the Prefect UI."""

    def claimed_run(self) -> str | None:
        """The run id this run writes under, which the gate holds exclusively while it runs
        (None: a new id the flow makes itself, unique already)."""
        value = getattr(self, "run_id", None)
        return value if isinstance(value, str) else None


class StageParams(Params):
    data_dir: LocalPath | None = Field(
        None, description="Data root; default $PIXELPIPE_DATA_DIR, else ./data"
    )
    run_id: RunId | None = Field(
        None, description="Run id for the rows and folders written; default: a new one"
    )


def runner_field(default: Runner, why: str) -> Any:
    return Field(
        default,
        description=f"Where shards run: threads, processes (this machine) or dask ({why})",
    )


def dask_address_field() -> Any:
    return Field(
        None,
        description="runner=dask: scheduler address (tcp://host:8786); default: a local"
        " cluster, one single-threaded worker process per core",
    )


def installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None, a broken install
        return False


def check_runner(runner: str | None, dask_address: str | None) -> None:
    """runner=dask needs prefect-dask installed, and an address only means something there."""
    if dask_address and runner != "dask":
        raise ValueError("dask_address is only used with runner=dask")
    if runner == "dask":
        import importlib.util

        try:
            found = importlib.util.find_spec("prefect_dask") is not None
        except (ImportError, ValueError):  # a module set to None, a broken install
            found = False
        if not found:
            raise ValueError(f"runner=dask needs prefect-dask, not installed here: {DASK_INSTALL}")
