"""Who may start what: runs started from a deployment obey the operator's allow-lists.

Anyone who can open the Prefect UI (or call its API, or edit a schedule) can start a served
run with any parameters, so a served run may only touch folders under the allowed roots and
only connect to allowed Dask schedulers (a Dask client unpickles what the scheduler sends).
`pixelpipe serve` (or a worker's environment, see deployments/prefect.yaml) sets the lists;
every flow calls `enforce_policy(params)` first. Runs started by hand keep their freedom.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prefect.context import FlowRunContext
from prefect.runtime import deployment
from pydantic import BaseModel

from storage.errors import ConfigError
from storage.layout import DATA_DIR_ENV, DEFAULT_DATA_DIR

ROOTS_ENV = "PIXELPIPE_ALLOWED_ROOTS"  # extra data/input roots, separated by os.pathsep
DASK_ENV = "PIXELPIPE_ALLOWED_DASK"  # Dask scheduler addresses, separated by commas
HOW_TO_ALLOW = (
    f"pixelpipe serve --allow-root DIR / --allow-dask ADDRESS, or {ROOTS_ENV} / {DASK_ENV}"
    " in the environment of the serve process or worker"
)

# Parameters that name a file or folder on this host, in any parameter model.
PATH_FIELDS = frozenset(
    {"data_dir", "source_dir", "dataset_dir", "inputs", "model_path", "out", "url_list"}
)
# Weights are a file unless they name the Keras cache or random weights (tasks/predict/spec.py
# and tasks/train/models.py read them the same way); predict's `model` when it names a file.
WEIGHTS_FIELDS = frozenset({"weights", "imagenet_weights", "classifier_weights", "feature_weights"})
_NOT_A_FILE = {"none", "null", "random", ""}


class PolicyError(ConfigError):
    """A served run asked for a folder or a Dask scheduler the operator did not allow."""


def served() -> bool:
    """True in a run started from a deployment (UI, API, schedule) and in its subflows."""
    return deployment.id is not None


def enforce_policy(params: BaseModel) -> None:
    """At the start of every flow: refuse a served run that breaks the operator's policy,
    before any work and before any connection; an ad-hoc run passes untouched."""
    if not served():
        return
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    refuse_env_overrides(run.job_variables if run else None)
    ServePolicy.from_env().check(params)


def refuse_env_overrides(job_variables: Mapping[str, Any] | None) -> None:
    """A run's own job variables must not reset the policy: whoever starts a run can set
    them (`prefect deployment run --job-variable`), and a worker puts them in its env."""
    env = (job_variables or {}).get("env")
    env = env if isinstance(env, dict) else {}
    names = sorted(str(k) for k in env if str(k).startswith("PIXELPIPE_"))
    if names:
        raise PolicyError(
            f"served run refused: its job variables set {', '.join(names)}; the policy is the"
            " operator's (set it on the deployment or work pool, not on a run)"
        )


def normalize_dask(address: str) -> str:
    """`tcp://host:port` with the scheme and host lower-cased, so equal addresses compare equal."""
    text = address.strip()
    parts = urlsplit(text if "://" in text else f"tcp://{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(f"Dask address {address!r} must look like tcp://host:8786")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host.lower()}:{port}"


@dataclass(frozen=True)
class ServePolicy:
    """Allowed roots (resolved; the data root first) and allowed Dask scheduler addresses."""

    roots: tuple[Path, ...]
    dask: frozenset[str]

    @classmethod
    def of(
        cls, data_root: str | os.PathLike[str], roots: Iterable[str], dask: Iterable[str]
    ) -> ServePolicy:
        """The policy from the serve process's data root and the lists it was given."""
        resolved = [Path(data_root).expanduser().resolve()]
        for root in roots:
            if not str(root).strip():
                continue
            path = Path(str(root).strip()).expanduser()
            if not path.is_absolute():
                raise ConfigError(f"allowed root {root!r} must be an absolute path")
            resolved.append(path.resolve())
        return cls(tuple(dict.fromkeys(resolved)), frozenset(normalize_dask(a) for a in dask))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServePolicy:
        """What `pixelpipe serve` exported (or a worker's env): by default the data root only
        and no Dask scheduler."""
        return cls.of(
            environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR,
            environ.get(ROOTS_ENV, "").split(os.pathsep),
            [a for a in environ.get(DASK_ENV, "").split(",") if a.strip()],
        )

    def environ(self) -> dict[str, str]:
        """The environment that hands this policy to flow runs (they inherit serve's env)."""
        return {
            DATA_DIR_ENV: str(self.roots[0]),
            ROOTS_ENV: os.pathsep.join(str(r) for r in self.roots[1:]),
            DASK_ENV: ",".join(sorted(self.dask)),
        }

    def describe(self) -> str:
        dask = ", ".join(sorted(self.dask)) or "none (a local cluster only)"
        return f"allowed roots: {', '.join(map(str, self.roots))}; Dask schedulers: {dask}"

    def allows_path(self, value: str) -> bool:
        """`value` resolved (symlinks, `..`, relative to the current folder) lies under a root.
        A leading `~` is checked both expanded and literal: the code expands it, mostly."""
        forms = {Path(value), Path(value).expanduser()}
        return all(any(p.resolve().is_relative_to(r) for r in self.roots) for p in forms)

    def allows_dask(self, address: str) -> bool:
        try:
            return normalize_dask(address) in self.dask
        except ConfigError:
            return False

    def refusals(self, params: BaseModel) -> list[str]:
        """One line per parameter value the policy refuses (empty: the run may start)."""
        found = []
        for name, value in _path_values(params):
            if not self.allows_path(value):
                found.append(f"{name} {value!r} is outside the allowed roots")
        for name, value in _leaves(params):
            if name.rsplit(".", 1)[-1] == "dask_address" and value and not self.allows_dask(value):
                found.append(f"{name} {value!r} is not an allowed Dask scheduler")
        return found

    def check(self, params: BaseModel) -> None:
        found = self.refusals(params)
        if found:
            raise PolicyError(
                "served run refused by the operator's policy: "
                + "; ".join(found)
                + f" ({self.describe()}). Use a path under an allowed root, or ask the operator"
                f" to allow it: {HOW_TO_ALLOW}"
            )


def _leaves(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted field name, value) of every field, nested models (pipeline stages) expanded."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield prefix + name, value


def _path_values(params: BaseModel) -> Iterator[tuple[str, str]]:
    """Every parameter value that the flows will open as a file or folder on this host."""
    for name, value in _leaves(params):
        values = value if isinstance(value, list) else [value]
        yield from ((name, v) for v in values if isinstance(v, str) and _is_path(params, name, v))


def _is_path(params: BaseModel, dotted: str, value: str) -> bool:
    field = dotted.rsplit(".", 1)[-1]
    if field in WEIGHTS_FIELDS:  # else the Keras cache or random weights
        return value != "imagenet" and value.strip().lower() not in _NOT_A_FILE
    if field in ("model", "classifier"):  # curate's on-topic classifier is a model too
        return _free_string(params, dotted) and _names_a_file(value)
    return field in PATH_FIELDS


def _free_string(params: BaseModel, dotted: str) -> bool:
    """`model` names a file only where it is a free string; a choice list (train's) is not."""
    owner: Any = params
    *parents, leaf = dotted.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return type(owner).model_fields[leaf].annotation is str


def _names_a_file(model: str) -> bool:
    """What predict opens as a path (tasks/predict/spec.py): one that exists or has a folder
    in it; any other name is a backbone or a train run id under the (checked) data root."""
    return "/" in model or Path(model).expanduser().exists()
