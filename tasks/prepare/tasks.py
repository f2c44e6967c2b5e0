"""prepare_dataset's batch tasks: hash and inspect files (cached), render them (pooled)."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from tasks.prepare.columns import inspection_table, rendered_table
from tasks.prepare.render import RenderSettings, inspect_file, render_many
from tasks.runtime import logger

INSPECT_VERSION = 4  # part of the cache key of inspect_batch


@task(
    name="inspect-images",
    cache_policy=INPUTS + TASK_SOURCE,
    cache_expiration=timedelta(days=30),
    # The flow reads each table once: kept in Prefect's in-memory result cache (a thousand
    # records) they would hold every image's inspection until the process ends.
    cache_result_in_memory=False,
)
def inspect_batch(files: list[tuple[str, int, int]], version: int = INSPECT_VERSION) -> pa.Table:
    """inspect_file over a batch of (path, size, mtime_ns), as one columns.INSPECTION table:
    a row per file, in order (one object per batch for Prefect to hold, not a dict a file).
    The cache key is that list (and `version`), so a re-run over unchanged files reads
    nothing; a changed size or mtime misses. TASK_SOURCE covers this function only: bump
    INSPECT_VERSION when inspect_file or the table changes."""
    return inspection_table(inspect_file(path) for path, _size, _mtime in files)


@task(name="render-images", cache_policy=NO_CACHE)
def render_batch(
    items: list[tuple[str, str]], settings: RenderSettings, workers: int = 1
) -> pa.Table:
    """Render a batch of (source, output) pairs across the process pool; one columns.RENDERED
    row (status, error) per pair, in order.

    Not cached by Prefect: the flow only sends images whose output file is missing, and a
    cache record could not see an output deleted or overwritten since it was made."""
    return rendered_table(render_many(items, settings, workers, warn=logger().warning))
