"""Who may start what: runs started from a deployment obey the operator's allow-lists.

Anyone who can open the Prefect UI (or call its API, or edit a schedule) can start a served
run with any parameters, so a served run may only touch folders under the allowed roots and
only connect to allowed Dask schedulers (a Dask client unpickles what the scheduler sends).
`pixelpipe serve` (or a worker's environment, see deployments/prefect.yaml) sets the lists;
every flow enters through the gate (flows/gate/entry.py), which calls `enforce_policy(params)`
first. A path parameter is found by its type (flows.params.PathParam: LocalPath, WeightsPath,
ModelRef), never by its name. Runs started by hand keep their freedom.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin
from urllib.parse import urlsplit

from prefect.context import FlowRunContext
from prefect.runtime import deployment
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from flows.params import PathParam
from storage.errors import ConfigError, PixelpipeError
from storage.layout import DATA_DIR_ENV, DEFAULT_DATA_DIR
from tasks.predict.spec import model_location

ROOTS_ENV = "PIXELPIPE_ALLOWED_ROOTS"  # extra data/input roots, separated by os.pathsep
DASK_ENV = "PIXELPIPE_ALLOWED_DASK"  # Dask scheduler addresses, separated by commas
HOW_TO_ALLOW = (
    f"pixelpipe serve --allow-root DIR / --allow-dask ADDRESS, or {ROOTS_ENV} / {DASK_ENV}"
    " in the environment of the serve process or worker"
)

# Weights are a file unless they name the Keras cache or random weights (tasks/predict/spec.py
# and tasks/train/models.py read them the same way).
NOT_A_FILE = frozenset({"none", "null", "random", ""})
PATH_MAX, NAME_MAX = 4096, 255  # Linux's limits in bytes: longer is ENAMETOOLONG


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

    def refuses_path(self, value: str) -> str | None:
        """Why `value` may not be used (None: it resolves under a root). Resolved means
        symlinks and `..` followed, relative to the current folder; a leading `~` is checked
        both expanded and literal (the code expands it, mostly). A value the OS cannot
        resolve or open (a NUL byte, a symlink loop, a name too long) is refused too."""
        try:
            forms = {Path(value), Path(value).expanduser()}
            too_long = _too_long(value)
            resolved = [p.resolve() for p in forms]
        except (OSError, ValueError, RuntimeError) as e:  # NUL, loops, encodings, ~nobody
            return f"cannot be resolved ({_first_line(e)})"
        if too_long:
            return too_long
        if all(any(p.is_relative_to(r) for r in self.roots) for p in resolved):
            return None
        return "is outside the allowed roots"

    def allows_dask(self, address: str) -> bool:
        try:
            return normalize_dask(address) in self.dask
        except ConfigError:
            return False

    def refusals(self, params: BaseModel) -> list[str]:
        """One line per parameter value the policy refuses (empty: the run may start)."""
        found = []
        for name, value, opened in _opened_paths(params):
            why = opened if isinstance(opened, Refusal) else self.refuses_path(opened)
            if why:
                found.append(f"{name} {_shown(value)} {why}")
        for name, value in _leaves(params):
            if name.rsplit(".", 1)[-1] == "dask_address" and value and not self.allows_dask(value):
                found.append(f"{name} {_shown(value)} is not an allowed Dask scheduler")
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


class Refusal(str):
    """Why a parameter was refused before its path could be judged."""


def path_parameters(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, PathParam, str]]:
    """(dotted name, mark, value) of every value whose type carries a PathParam (LocalPath,
    WeightsPath, ModelRef), in any model at any depth: the type says what is a path."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from path_parameters(value, f"{prefix}{name}.")
            continue
        mark = _mark(field)
        if mark is not None:
            values = value if isinstance(value, list) else [value]
            yield from ((prefix + name, mark, v) for v in values if isinstance(v, str))


def _mark(field: FieldInfo) -> PathParam | None:
    found = [m for m in field.metadata if isinstance(m, PathParam)]
    return found[0] if found else _mark_in(field.annotation)


def _mark_in(annotation: Any) -> PathParam | None:
    """The PathParam inside `T | None`, `list[T]` or `Annotated[str, PathParam()]`."""
    args = get_args(annotation)
    if get_origin(annotation) is Annotated:
        found = [m for m in args[1:] if isinstance(m, PathParam)]
        return found[0] if found else _mark_in(args[0])
    return next((m for m in map(_mark_in, args) if m is not None), None)


def _opened_paths(params: BaseModel) -> Iterator[tuple[str, str, str | Refusal]]:
    """(name, value, the path the run will open, or why it cannot be judged) for every path
    parameter that opens one: weights that name the Keras cache or random weights open
    none; a model reference opens what it resolves to (a champion pointer's model)."""
    data_dir = getattr(params, "data_dir", None)
    for name, mark, value in path_parameters(params):
        if mark.kind == "weights" and (value == "imagenet" or value.strip().lower() in NOT_A_FILE):
            continue
        if mark.kind != "model":
            yield name, value, value
            continue
        try:
            opened = model_location(value, data_dir)
        except (PixelpipeError, OSError, ValueError, RuntimeError) as e:
            yield name, value, Refusal(f"cannot be resolved ({_first_line(e)})")
            continue
        if opened is not None:
            yield name, value, str(opened)


def _too_long(value: str) -> str | None:
    """What the OS would refuse with ENAMETOOLONG, said before it does."""
    raw = os.fsencode(value)
    if len(raw) >= PATH_MAX or any(len(part) > NAME_MAX for part in raw.split(b"/")):
        return f"is too long (at most {PATH_MAX - 1} bytes, {NAME_MAX} per name)"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return _clip(text[0] if text else type(error).__name__, 160)  # its path is quoted already


def _shown(value: str) -> str:
    """The value as a one-line quote, clipped: a refusal never spans lines or pages."""
    return _clip(repr(value))


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
