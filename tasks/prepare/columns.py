"""Per-image state of prepare as compact columns: the inspection and render results the
tasks return (one Arrow table a batch, never a dict an image), so the flow's memory stays a
few hundred bytes an image at 100,000 images."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# What inspect_file found, a row per file. Hashes as integers (the manifest writes them back
# as 16 hex digits); the mean colour as three float32s (what near-duplicate grouping compares).
INSPECTION = pa.schema(
    [
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("phash", pa.uint64()),
        ("phash_centre", pa.uint64()),
        ("red", pa.float32()),
        ("green", pa.float32()),
        ("blue", pa.float32()),
        ("brightness", pa.float32()),
        ("contrast", pa.float32()),
        ("status", pa.string()),
        ("error", pa.string()),
    ]
)
RENDERED = pa.schema([("status", pa.string()), ("error", pa.string())])
COLOURS = ("red", "green", "blue")


def inspection_table(infos: Iterable[dict[str, Any]]) -> pa.Table:
    """inspect_file's dicts as one INSPECTION table (a missing key is a null)."""
    columns: dict[str, list[Any]] = {name: [] for name in INSPECTION.names}
    for info in infos:
        colour = info.get("mean_color") or (None, None, None)
        for name, value in zip(COLOURS, colour, strict=True):
            columns[name].append(value)
        for name in ("phash", "phash_centre"):
            columns[name].append(int(info[name], 16) if info.get(name) else None)
        for name in ("sha256", "width", "height", "brightness", "contrast", "status", "error"):
            columns[name].append(info.get(name))
    return pa.table(columns, schema=INSPECTION)


def rendered_table(results: Sequence[tuple[str, str | None]]) -> pa.Table:
    """render_many's (status, error) pairs as one RENDERED table, in the same order."""
    return pa.table(
        {"status": [s for s, _ in results], "error": [e for _, e in results]}, schema=RENDERED
    )


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """The batches' INSPECTION tables as one, in order (an empty table for no batch)."""
    return pa.concat_tables(tables) if tables else inspection_table([])


def failures(done: pa.Table) -> tuple[np.ndarray, list[str], list[str | None]]:
    """Of a RENDERED table: a mask of its rows that failed, and their statuses and errors."""
    failed = pc.not_equal(done.column("status"), "ok").to_numpy(zero_copy_only=False)
    bad = done.filter(failed)
    return failed, bad.column("status").to_pylist(), bad.column("error").to_pylist()


def manifest_frame(rows: pd.DataFrame, **constant: Any) -> pd.DataFrame:
    """A plan as dataset_manifest rows: `constant` columns added (run_id, dataset, ...), the
    hashes as imagehash writes them (16 lower-case hex digits). The other columns are shared
    with `rows`, not copied."""
    phash = rows["phash"]
    present = phash.notna().to_numpy()
    values = phash.to_numpy(np.uint64, na_value=0)
    hexes = [f"{int(v):016x}" if p else None for v, p in zip(values, present, strict=True)]
    return rows.assign(**constant, phash=pd.array(hexes, dtype="str"))
