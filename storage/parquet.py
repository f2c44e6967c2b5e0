"""Atomic, schema-checked Parquet writes of one run's rows, and reads across all runs."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from storage import files
from storage.errors import DamagedFileError, PixelpipeError, SchemaError
from storage.layout import Layout, safe_name
from storage.rows import Rows, schema_of, to_arrow

PARTITION = "run_date"
READ_ATTEMPTS = 5  # listings of a table tried while re-runs replace parts under a reader
_PART_NUMBER = re.compile(r"\d{4}")
log = logging.getLogger("pixelpipe.storage")
OnDamaged = Literal["raise", "skip"]
_PARTITIONING = ds.partitioning(pa.schema([(PARTITION, pa.string())]), flavor="hive")

# Nullable integer and boolean columns stay integers and booleans in pandas (404, not 404.0).
_PANDAS_TYPES = {
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


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
    arrow = _checked(table, rows, run_id)
    return _write(table, [arrow], run_id, data_dir, run_date, part)


def write_batches(
    table: str,
    batches: Iterable[Rows],
    *,
    run_id: str,
    data_dir: str | os.PathLike[str] | None = None,
    run_date: date | str | None = None,
    part: str | None = None,
) -> Path:
    """write_table's file from batches of rows, each checked and written as it comes, so a
    writer of many rows holds one batch at a time; a bad batch leaves no file."""
    checked = (_checked(table, rows, run_id) for rows in batches)
    return _write(table, checked, run_id, data_dir, run_date, part)


def _checked(table: str, rows: Rows, run_id: str) -> pa.Table:
    arrow = to_arrow(table, rows)
    if arrow.num_rows and pc.unique(arrow.column("run_id")).to_pylist() != [run_id]:
        raise SchemaError(f"{table}.run_id: every row must have run_id {run_id!r}")
    return arrow


def _write(
    table: str, arrows: Iterable[pa.Table], run_id: str,
    data_dir: str | os.PathLike[str] | None, run_date: date | str | None, part: str | None,
) -> Path:  # fmt: skip
    run_date = run_date or datetime.now(UTC).date()
    path = Layout.at(data_dir).table_file(table, run_id, str(run_date), part)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_with(path, partial(_write_parquet, schema_of(table), arrows))
    return path


def _write_parquet(schema: pa.Schema, arrows: Iterable[pa.Table], target: Path) -> None:
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        for arrow in arrows:
            writer.write_table(arrow)


def part_name(group: str, number: int) -> str:
    """The part name of shard `number` of a group of parts (a label, a model key): `g-0001`."""
    return f"{group}-{number:04d}"


def run_parts(
    table: str,
    *,
    run_id: str,
    group: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """This run's files of `table` on every run date: `<run_id>.parquet` when `group` is None,
    else the shards `<run_id>-<part_name(group, n)>.parquet`.

    Each listed file is compared with the name Layout builds for it, so no user input ever
    becomes a pattern; a file whose rows belong to another run (run `a` group `b-x` and run
    `a-b` group `x` build the same names) is not this run's.
    """
    safe_name(run_id, "run id")  # refused before anything is listed, let alone deleted
    if group is not None:
        safe_name(group, "part")
    layout = Layout.at(data_dir)
    folder = layout.table_dir(table)
    found = []
    for day in sorted(folder.glob(f"{PARTITION}=*")) if folder.is_dir() else ():
        run_date = day.name.partition("=")[2]
        for path in sorted(day.glob("*.parquet")):
            number = path.stem.rpartition("-")[2]
            if group is None:
                built = layout.table_file(table, run_id, run_date)
            elif _PART_NUMBER.fullmatch(number):
                built = layout.table_file(table, run_id, run_date, part_name(group, int(number)))
            else:
                continue
            if path == built and _rows_of(path, run_id):
                found.append(path)
    return found


def replace_parts(
    table: str,
    *,
    run_id: str,
    written: Iterable[str | os.PathLike[str]],
    group: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """After a (re-)run has written its parts, delete its older ones (other dates, shards it
    no longer has) and return them. Every stage replaces a run this way: new files first, old
    ones after, so a crash leaves the old rows or the new, never none."""
    keep = {Path(p).resolve() for p in written}
    old = run_parts(table, run_id=run_id, group=group, data_dir=data_dir)
    removed = [p for p in old if p.resolve() not in keep]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _rows_of(path: Path, run_id: str) -> bool:
    """Whether a part file holds run `run_id`'s rows (a damaged or empty one counts as ours:
    its name is the one we build, and a re-run replaces it)."""
    try:
        ids = pq.read_table(path, columns=["run_id"]).column("run_id").unique().to_pylist()
    except FileNotFoundError:
        return False
    except (pa.ArrowException, OSError):
        return True
    return not ids or ids == [run_id]


def read_table(
    table: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    run_id: str | Iterable[str] | None = None,
    run_date: date | str | None = None,
    columns: list[str] | None = None,
    on_damaged: OnDamaged = "raise",
    limit: int | None = None,
) -> pd.DataFrame:
    """All runs of a table as one DataFrame (plus a `run_date` column), optionally filtered.

    Only the part files that can hold the rows are opened (a run's by its file name, a day's
    by its folder); `columns` are the only ones read; `limit` stops after that many rows (the
    first ones in part order: oldest day, then file name). A missing or empty table reads as
    an empty DataFrame with the schema's columns. A part replaced by a re-run between listing
    and reading is read again from a new listing; a damaged part raises DamagedFileError
    naming it, or with `on_damaged="skip"` is left out with a one-line warning.
    """
    schema = schema_of(table).append(pa.field(PARTITION, pa.string()))
    folder = Layout.at(data_dir).table_dir(table)
    ids = run_ids_of(run_id)
    where = None if ids is None else ds.field("run_id").isin(sorted(ids))
    if run_date is not None:
        on_date = ds.field(PARTITION) == str(run_date)
        where = on_date if where is None else where & on_date

    def read(paths: list[Path]) -> pd.DataFrame:
        tables: list[pa.Table] = []
        wanted = limit
        for path in paths:
            if wanted is not None and wanted <= 0:
                break
            part = _read_part(path, schema, folder, columns, where, on_damaged, wanted)
            if part is not None:
                tables.append(part)
                wanted = None if wanted is None else wanted - part.num_rows
        if not tables:
            return _to_pandas(_select(schema.empty_table(), columns))
        return _to_pandas(pa.concat_tables(tables))

    return listed_parts(table, folder, ids, run_date, read)


def run_ids_of(run_id: str | Iterable[str] | None) -> set[str] | None:
    if run_id is None:
        return None
    return {run_id} if isinstance(run_id, str) else set(run_id)


def part_files(folder: Path, run_ids: set[str] | None, run_date: date | str | None) -> list[Path]:
    """The part files of a table folder that may hold these runs' rows on that day, in order.

    Pruned by name, never by building a path from the arguments: the day by its folder
    `run_date=<day>`, a run by its file, `<run_id>.parquet` or `<run_id>-<part>.parquet`.
    Names can be shared (run `a` part `b-x` and run `a-b` part `x`), so readers still filter
    rows by run_id; pruning only skips files that cannot hold the runs.
    """
    if not folder.is_dir():
        return []
    day = None if run_date is None else f"{PARTITION}={run_date}"
    found = []
    for folder_of_day in sorted(folder.glob(f"{PARTITION}=*")):
        if day is not None and folder_of_day.name != day:
            continue
        for path in sorted(folder_of_day.glob("*.parquet")):
            if run_ids is None or _may_hold(path.stem, run_ids):
                found.append(path)
    return found


def _may_hold(stem: str, run_ids: set[str]) -> bool:
    """Whether a part named `stem` can be a file of one of `run_ids`: the whole stem, or the
    stem up to one of its dashes (a run's shard `<run_id>-<part>`)."""
    return stem in run_ids or any(stem[:i] in run_ids for i, char in enumerate(stem) if char == "-")


def listed_parts(
    table: str, folder: Path, run_ids: set[str] | None, run_date: date | str | None, action: Any
) -> Any:
    """`action(part files)`, listed again if a part vanished under it (a re-run replaced it)."""
    for _ in range(READ_ATTEMPTS):
        try:
            return action(part_files(folder, run_ids, run_date))
        except FileNotFoundError:
            continue  # a re-run removed a part after writing its new ones: list again
    raise PixelpipeError(
        f"{table}: parts kept vanishing while reading ({READ_ATTEMPTS} listings); try again"
        " when the re-runs writing it have finished"
    )


def scan_table(
    table: str,
    *,
    where: ds.Expression | None = None,
    columns: list[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    on_damaged: OnDamaged = "raise",
    run_id: str | Iterable[str] | None = None,
) -> Iterator[pa.Table]:
    """A table's rows part by part, filtered by `where` (Arrow expression) and `run_id` (only
    the runs' files are opened, as in read_table): a reader of any size of history or run
    holds one part at a time. A part a re-run removes while it is listed is passed over; a
    damaged part raises or is skipped as in read_table."""
    schema = schema_of(table).append(pa.field(PARTITION, pa.string()))
    folder = Layout.at(data_dir).table_dir(table)
    ids = run_ids_of(run_id)
    if ids is not None:
        of_runs = ds.field("run_id").isin(sorted(ids))
        where = of_runs if where is None else where & of_runs
    for path in part_files(folder, ids, None):
        try:
            part = _read_part(path, schema, folder, columns, where, on_damaged)
        except FileNotFoundError:
            continue
        if part is not None and part.num_rows:
            yield part


def _read_part(
    path: Path,
    schema: pa.Schema,
    folder: Path,
    columns: list[str] | None,
    where: ds.Expression | None,
    on_damaged: OnDamaged,
    limit: int | None = None,
) -> pa.Table | None:
    """One part file's rows, at most `limit` (FileNotFoundError when it vanished; None when
    damaged and skipped)."""
    try:
        part = ds.dataset(
            [str(path)],
            schema=schema,
            format="parquet",
            partitioning=_PARTITIONING,
            partition_base_dir=str(folder),
        )
        if limit is not None:
            return part.head(limit, columns=columns, filter=where)
        return part.to_table(columns=columns, filter=where)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as e:
        damaged_part(path, e, on_damaged)
        return None


def damaged_part(path: Path, error: BaseException, on_damaged: OnDamaged) -> None:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    message = f"damaged part file {path}: {reason}"
    if on_damaged == "raise":
        raise DamagedFileError(f"{message} (delete it, or re-run its run)") from None
    log.warning("%s; skipped", message)


def _to_pandas(arrow: pa.Table) -> pd.DataFrame:
    return arrow.to_pandas(types_mapper=_PANDAS_TYPES.get)


def _select(arrow: pa.Table, columns: list[str] | None) -> pa.Table:
    return arrow.select(columns) if columns else arrow
