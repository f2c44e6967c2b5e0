"""Atomic, schema-checked Parquet writes of one run's rows, and reads across all runs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from storage import files
from storage.errors import SchemaError
from storage.layout import Layout
from storage.schemas import STATUS_COLUMNS, STATUSES, TABLES

PARTITION = "run_date"
_PARTITIONING = ds.partitioning(pa.schema([(PARTITION, pa.string())]), flavor="hive")

# Nullable integer and boolean columns stay integers and booleans in pandas (404, not 404.0).
_PANDAS_TYPES = {
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}

Rows = Iterable[Mapping[str, Any]] | pd.DataFrame | pa.Table


def schema_of(table: str) -> pa.Schema:
    try:
        return TABLES[table]
    except KeyError:
        raise SchemaError(f"unknown table {table!r}; tables are: {', '.join(TABLES)}") from None


def to_arrow(table: str, rows: Rows) -> pa.Table:
    """Check `rows` against the table's schema column by column and return an Arrow table.

    Raises SchemaError naming the table and the offending column: missing, unexpected,
    of the wrong type, null where the schema forbids it, or a status outside the vocabulary.
    """
    schema = schema_of(table)
    columns = _columns(rows) or {f.name: [] for f in schema}  # no rows at all: an empty run
    missing = [f.name for f in schema if f.name not in columns]
    extra = [name for name in columns if schema.get_field_index(name) < 0]
    if missing:
        raise SchemaError(f"{table}: missing column {missing[0]!r} (all missing: {missing})")
    if extra:
        raise SchemaError(f"{table}: unexpected column {extra[0]!r} (not in the schema: {extra})")
    arrays = []
    for field in schema:
        try:
            array = pa.array(columns[field.name], type=field.type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as e:
            raise SchemaError(f"{table}.{field.name}: values are not {field.type}: {e}") from e
        if not field.nullable and array.null_count:
            raise SchemaError(f"{table}.{field.name}: {array.null_count} null value(s) not allowed")
        arrays.append(array)
    result = pa.Table.from_arrays(arrays, schema=schema)
    _check_statuses(table, result)
    return result


def write_table(
    table: str,
    rows: Rows,
    *,
    run_id: str,
    data_dir: str | os.PathLike[str] | None = None,
    run_date: date | str | None = None,
    part: str | None = None,
) -> Path:
    """Write one run's rows atomically and return the file's path.

    The file is `warehouse/<table>/run_date=YYYY-MM-DD/<run_id>[-<part>].parquet`; writing
    the same run (and part) again replaces it in one step, so readers never see half a file.
    """
    arrow = to_arrow(table, rows)
    if arrow.num_rows and set(arrow.column("run_id").to_pylist()) != {run_id}:
        raise SchemaError(f"{table}.run_id: every row must have run_id {run_id!r}")
    run_date = run_date or datetime.now(UTC).date()
    path = Layout.at(data_dir).table_file(table, run_id, str(run_date), part)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_with(path, partial(pq.write_table, arrow, compression="zstd"))
    return path


def read_table(
    table: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    run_id: str | Iterable[str] | None = None,
    run_date: date | str | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """All runs of a table as one DataFrame (plus a `run_date` column), optionally filtered.

    A missing or empty table reads as an empty DataFrame with the schema's columns.
    """
    schema = schema_of(table).append(pa.field(PARTITION, pa.string()))
    folder = Layout.at(data_dir).table_dir(table)
    files = sorted(folder.glob(f"{PARTITION}=*/*.parquet")) if folder.is_dir() else []
    if not files:
        return _to_pandas(_select(schema.empty_table(), columns))
    dataset = ds.dataset(
        [str(f) for f in files],
        schema=schema,
        format="parquet",
        partitioning=_PARTITIONING,
        partition_base_dir=str(folder),
    )
    where = None
    if run_id is not None:
        ids = [run_id] if isinstance(run_id, str) else list(run_id)
        where = ds.field("run_id").isin(ids)
    if run_date is not None:
        on_date = ds.field(PARTITION) == str(run_date)
        where = on_date if where is None else where & on_date
    return _to_pandas(dataset.to_table(columns=columns, filter=where))


def table_counts(data_dir: str | os.PathLike[str] | None = None) -> dict[str, tuple[int, int]]:
    """`{table: (rows, runs)}` for every declared table, zero for absent ones."""
    counts = {}
    for name in TABLES:
        frame = read_table(name, data_dir=data_dir, columns=["run_id"])
        counts[name] = (len(frame), frame["run_id"].nunique())
    return counts


def _columns(rows: Rows) -> dict[str, list[Any]]:
    if isinstance(rows, pa.Table):
        return {name: rows.column(name).to_pylist() for name in rows.column_names}
    if isinstance(rows, pd.DataFrame):
        return {name: rows[name].tolist() for name in rows.columns}
    rows = list(rows)
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    # A column absent from some rows is a bug in the caller, not a null: report it.
    for i, row in enumerate(rows):
        if missing := [n for n in names if n not in row]:
            raise SchemaError(f"row {i} lacks column {missing[0]!r} that other rows have")
    return {name: [row[name] for row in rows] for name in names}


def _check_statuses(table: str, arrow: pa.Table) -> None:
    allowed = STATUSES.get(table)
    if allowed is None:
        return
    column = STATUS_COLUMNS.get(table, "status")
    unknown = set(arrow.column(column).to_pylist()) - set(allowed)
    if unknown:
        raise SchemaError(
            f"{table}.{column}: unknown value(s) {sorted(unknown)}; allowed: {', '.join(allowed)}"
        )


def _to_pandas(arrow: pa.Table) -> pd.DataFrame:
    return arrow.to_pandas(types_mapper=_PANDAS_TYPES.get)


def _select(arrow: pa.Table, columns: list[str] | None) -> pa.Table:
    return arrow.select(columns) if columns else arrow
