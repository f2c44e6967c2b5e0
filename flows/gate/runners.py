"""Where a flow's shard tasks run: one helper turns a stage's `runner` choice into a task runner."""

from __future__ import annotations

import os
from typing import Any

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flows.params import DASK_INSTALL, Runner, check_runner
from storage.errors import ConfigError


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's share, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_cluster_kwargs(workers: int | None = None) -> dict[str, Any]:
    """A LocalCluster sized to the machine: one process per core, one thread each, so a
    shard owns a core and a worker that dies takes only its own shard with it."""
    return {"n_workers": workers or machine_cores(), "threads_per_worker": 1, "processes": True}


def unwalked(value: Any, runner: Runner) -> Any:
    """A shard's big parameter (thousands of URLs, paths, pairs), marked so Prefect does not
    visit each element looking for futures to wait on (0.8 s of CPU over a 5,000-URL scrape);
    none is a future. Not on Dask: its client rebuilds tuples, and `quote` is one, so the task
    would get the wrapper; there the parameters are serialized to the worker anyway."""
    return value if runner == "dask" else quote(value)


def task_runner_for(
    runner: Runner,
    dask_address: str | None = None,
    *,
    threads: int | None = None,
    processes: int | None = None,
) -> TaskRunner:
    """A fresh task runner for the shards of one flow run; use it as a context manager and
    `.submit` tasks to it. `threads` / `processes` bound the local pools (None: Prefect's
    default); a Dask runner connects to `dask_address` or starts a LocalCluster for the run.
    """
    try:
        check_runner(runner, dask_address)
    except ValueError as e:  # the parameter models say it first; this guards direct callers
        raise ConfigError(str(e)) from None
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=threads)
    if runner == "processes":
        return ProcessPoolTaskRunner(max_workers=processes)
    try:
        # prefect_dask itself first: the module below, once imported, would hide its absence.
        import prefect_dask  # noqa: F401

        from flows.gate.dask_runner import QuietDaskTaskRunner  # deferred: optional extra
    except ImportError as e:
        raise ConfigError(f"runner=dask needs prefect-dask ({e}): {DASK_INSTALL}") from e
    if dask_address:
        return QuietDaskTaskRunner(address=dask_address)
    return QuietDaskTaskRunner(cluster_kwargs=local_cluster_kwargs())
