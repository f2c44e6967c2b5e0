"""Rows checked against a table's schema (storage.schemas), column by column, into Arrow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from storage.errors import SchemaError
from storage.schemas import STATUSES, TABLES, VOCABULARIES

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
        values = columns[field.name]
        if isinstance(values, pd.Series) and not pa.types.is_string(field.type):
            # pandas' Arrow strings would be parsed ('12' -> 12); text in a number column is
            # refused, as from Python values.
            values = values.tolist() if isinstance(values.dtype, pd.StringDtype) else values
        try:
            array = pa.array(values, type=field.type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as e:
            raise SchemaError(f"{table}.{field.name}: values are not {field.type}: {e}") from e
        if not field.nullable and array.null_count:
            raise SchemaError(f"{table}.{field.name}: {array.null_count} null value(s) not allowed")
        arrays.append(array)
    result = pa.Table.from_arrays(arrays, schema=schema)
    _check_statuses(table, result)
    return result


def _columns(rows: Rows) -> dict[str, Any]:
    if isinstance(rows, pa.Table):
        return {name: rows.column(name).to_pylist() for name in rows.column_names}
    if isinstance(rows, pd.DataFrame):
        # The columns themselves: pa.array converts each without a Python object per cell.
        return {name: rows[name] for name in rows.columns}
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
    closed = dict(VOCABULARIES.get(table, {}))
    if table in STATUSES:
        closed["status"] = STATUSES[table]
    for column, allowed in closed.items():
        unknown = set(pc.unique(arrow.column(column)).to_pylist()) - set(allowed) - {None}
        if unknown:
            raise SchemaError(
                f"{table}.{column}: unknown value(s) {sorted(unknown)};"
                f" allowed: {', '.join(allowed)}"
            )
