"""How many rows a warehouse table holds, per run, read from the part files' Parquet footers
rather than their rows: `pixelpipe tables` and `show` stay quick on millions of rows."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from storage.layout import Layout
from storage.parquet import OnDamaged, damaged_part, listed_parts, run_ids_of
from storage.rows import schema_of
from storage.schemas import TABLES


def count_rows(
    table: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    run_id: str | Iterable[str] | None = None,
    run_date: date | str | None = None,
    on_damaged: OnDamaged = "raise",
) -> int:
    """How many rows read_table would return with these filters, from the part files'
    footers (no rows read, except from a part whose footer cannot name its run)."""
    schema_of(table)
    ids = run_ids_of(run_id)
    runs = listed_parts(
        table,
        Layout.at(data_dir).table_dir(table),
        ids,
        run_date,
        lambda paths: _runs_in(paths, on_damaged),
    )
    return sum(n for run, n in runs.items() if ids is None or run in ids)


def table_counts(data_dir: str | os.PathLike[str] | None = None) -> dict[str, tuple[int, int]]:
    """`{table: (rows, runs)}` for every declared table, zero for absent ones, from the part
    files' footers; damaged parts are skipped with a warning naming each."""
    counts = {}
    for name in TABLES:
        folder = Layout.at(data_dir).table_dir(name)
        runs = listed_parts(name, folder, None, None, lambda paths: _runs_in(paths, "skip"))
        counts[name] = (sum(runs.values()), sum(1 for n in runs.values() if n))
    return counts


def _runs_in(paths: list[Path], on_damaged: OnDamaged) -> Counter[str]:
    """Rows per run id over part files (FileNotFoundError when one vanished)."""
    runs: Counter[str] = Counter()
    for path in paths:
        try:
            runs.update(_rows_per_run(path))
        except FileNotFoundError:
            raise
        except (pa.ArrowException, OSError) as e:
            damaged_part(path, e, on_damaged)
    return runs


def _rows_per_run(path: Path) -> Counter[str]:
    """Rows per run id of one part, from its footer: write_table puts one run in a file, so
    the run_id column's min and max statistics name it. A part whose statistics do not (none
    written, or two runs) has its run_id column read, and only that."""
    meta = pq.read_metadata(path)
    column = next(i for i in range(meta.num_columns) if meta.schema.column(i).path == "run_id")
    runs: Counter[str] = Counter()
    for chunk in (meta.row_group(g) for g in range(meta.num_row_groups)):
        stats = chunk.column(column).statistics if chunk.num_rows else None
        if chunk.num_rows and (stats is None or not stats.has_min_max or stats.min != stats.max):
            return Counter(pq.read_table(path, columns=["run_id"]).column("run_id").to_pylist())
        if stats is not None:
            runs[stats.min] += chunk.num_rows
    return runs
