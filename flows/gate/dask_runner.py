"""runner=dask's task runner: prefect-dask's, with Dask's logs of recent messages off in the
flow process (they held every shard's arguments until the run ended)."""

from __future__ import annotations

from typing import Any

import dask
from prefect_dask import DaskTaskRunner

# Dask keeps the last `low-level-log-length` (1,000) messages of each connection for
# debugging, each with its task's arguments: the client's update-graph messages (and, in a
# LocalCluster started by the run, the scheduler's compute-task ones) kept every shard's
# candidates in the flow process until the run ended, ~0.5 KB per image (measured). The same
# setting sizes the scheduler's transition and event logs, debugging aids as well.
NO_MESSAGE_LOGS = {"distributed.admin.low-level-log-length": 0}


class QuietDaskTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner whose client, and the LocalCluster it starts when given no address,
    are created without those logs (prefect-dask creates both on first use)."""

    @property
    def client(self) -> Any:
        with dask.config.set(NO_MESSAGE_LOGS):
            return super().client
