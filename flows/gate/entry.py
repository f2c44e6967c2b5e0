"""The one way into every flow: `@gated_flow(name=...)` wraps Prefect's `flow` so each run,
served or ad hoc, called as a flow or through `.fn`, passes the same checks before any work.

In order: the parameters become the flow's model (a dict is validated; a pydantic error
becomes one ConfigError line), the served-run policy judges them (flows/gate/policy.py), and
the run id is claimed for the stage while the run works (flows/gate/claims.py). A pydantic
error escaping the body (a stored run's parameters re-read) is mapped to one ConfigError line.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Flow, flow
from pydantic import BaseModel, ValidationError

from flows.gate.claims import LEASE_S, RunClaim
from flows.gate.policy import enforce_policy
from flows.params import Params
from storage.errors import ConfigError
from storage.layout import resolve_data_dir

R = TypeVar("R")
GATE_MARK = "__pixelpipe_gate__"  # on the wrapped function: the stage name it claims under


def gated_flow(
    name: str, description: str | None = None, *, creates_root: bool = True, **options: Any
) -> Callable[[Callable[[Any], R]], Flow[Any, R]]:
    """`@flow(name=..., description=..., **options)` with the gate in front of the body.

    The function takes one parameter, `params`, annotated with its parameter model.
    `creates_root=False`: a flow that refuses a missing data root itself (write_report)
    claims only under a root that exists, so the claim does not create it.
    """

    def decorate(fn: Callable[[Any], R]) -> Flow[Any, R]:
        model = typing.get_type_hints(fn)["params"]

        @functools.wraps(fn)
        def entered(params: Any) -> R:
            params = _as_model(model, params)
            enforce_policy(params)  # a served run: only what the operator allows
            with _claimed(name, params, creates_root):
                try:
                    return fn(params)
                except ValidationError as e:
                    raise ConfigError(one_line(e)) from None
                finally:
                    _release_memory()

        # Prefect reads the signature to validate and to render the UI form: the original's,
        # with its annotations evaluated in the flow's own module.
        entered.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
        entered.__annotations__ = typing.get_type_hints(fn)
        setattr(entered, GATE_MARK, name)
        return flow(name=name, description=description, **options)(entered)

    return decorate


def _release_memory() -> None:
    """What the flow freed, back to the system before the next flow (a parent flow runs its
    stages in one process)."""
    from storage.memory import release_unused_memory  # deferred: cli start-up

    release_unused_memory()


def is_gated(candidate: object) -> bool:
    """True for a flow made by `gated_flow` (the test that walks the served flows asks)."""
    return isinstance(candidate, Flow) and hasattr(candidate.fn, GATE_MARK)


def _as_model(model: type[BaseModel], params: Any) -> BaseModel:
    if isinstance(params, model):
        return params
    try:
        return model.model_validate(params)
    except ValidationError as e:
        raise ConfigError(one_line(e)) from None


def _claimed(
    stage: str, params: BaseModel, creates_root: bool
) -> contextlib.AbstractContextManager:
    """The run's claim on (stage, run id) under its data root; nothing to claim for a run
    that makes a new id (schedules, UI triggers) or, with creates_root=False, no root yet."""
    run_id = params.claimed_run() if isinstance(params, Params) else None
    if not run_id:
        return contextlib.nullcontext()
    try:
        root = resolve_data_dir(getattr(params, "data_dir", None))
    except (OSError, ValueError, RuntimeError) as e:  # a NUL byte, a symlink loop
        given = getattr(params, "data_dir", None)
        raise ConfigError(f"data_dir {given!r} is unusable: {e}") from None
    if not creates_root and not root.is_dir():
        return contextlib.nullcontext()
    return RunClaim(root, stage, run_id, LEASE_S)


def one_line(error: ValidationError) -> str:
    """A pydantic error as one line: 'ModelName: field: message; other: message'."""
    parts = [f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in error.errors()]
    return f"{error.title}: " + "; ".join(parts)
