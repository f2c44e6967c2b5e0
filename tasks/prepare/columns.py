"""Per-image state of prepare as compact columns: the inspection and render results the
tasks return (one Arrow table a batch, never a dict an image), so the flow's memory stays a
few hundred bytes an image at 100,000 images."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from storage.parquet import scan_table

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
_EMPTY_URLS = pa.table({"sha256": pa.array([], pa.string()), "url": pa.array([], pa.string())})
COLOURS = ("red", "green", "blue")
_Arrow = pa.Array | pa.ChunkedArray


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


def same_codes(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An int64 code per value, equal for equal values (-1 for a null). Values of one width
    without nulls (hex digests) are compared as fixed-width bytes in numpy, without the hash
    table of every value that dictionary encoding builds (and its allocator keeps)."""
    fixed = _fixed_width(values)
    if fixed is None:
        return codes(values)[0]
    return np.unique(fixed, return_inverse=True)[1].astype(np.int64).ravel()


def codes(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Each value's position in the distinct values (int64, -1 for a null), and those values
    in order of first appearance: one Arrow pass, no Python object per row."""
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.DictionaryArray):
        encoded = pa.chunked_array([encoded])
    if not encoded.num_chunks:
        return np.zeros(0, np.int64), pa.array([], values.type)
    # One memo runs across the chunks: every chunk carries the same (final) dictionary.
    found = [pc.fill_null(c.indices, -1).to_numpy(zero_copy_only=False) for c in encoded.chunks]
    return np.concatenate(found).astype(np.int64), encoded.chunk(encoded.num_chunks - 1).dictionary


def _fixed_width(values: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """The values as one numpy array of fixed-width bytes (views of the Arrow buffers where a
    chunk allows), or None when they are not all of one width without nulls."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    if not pa.types.is_string(values.type) or values.null_count or not len(values):
        return None
    width = len(values[0].as_py().encode())
    lengths = pc.binary_length(values)
    if pc.min_max(lengths).as_py() != {"min": width, "max": width} or not width:
        return None
    views = []
    for chunk in chunks:
        offsets = np.frombuffer(chunk.buffers()[1], np.int32, len(chunk) + 1, chunk.offset * 4)
        data = np.frombuffer(chunk.buffers()[2], np.uint8)
        views.append(data[offsets[0] : offsets[-1]].view(f"S{width}"))
    return np.concatenate(views) if len(views) != 1 else views[0]


def scatter(values: pa.Array, source: np.ndarray) -> pa.Array:
    """values[source[i]] per row, null where source[i] < 0 (one Arrow take)."""
    return pc.take(values, pa.array(source, mask=source < 0))


class Outcomes:
    """The status and error of every row of a plan while it is decided: a small-int status
    code per row, and the error as an index into message arrays added once per decision;
    the text columns are built once at the end (pandas 3 copies a whole Arrow-backed column
    on every `.loc` assignment)."""

    def __init__(self, statuses: Sequence[str], status: pa.Array, error: pa.Array) -> None:
        found = pc.unique(pc.drop_null(status)).to_pylist()
        self.names = [*statuses, *sorted(set(found) - set(statuses))]
        code = pc.index_in(status, value_set=pa.array(self.names, pa.string()))
        self.status = pc.fill_null(code, -1).to_numpy(zero_copy_only=False).astype(np.int8)
        self._messages: list[pa.Array] = [error]
        self._count = len(error)
        self.error = np.arange(len(error), dtype=np.int64)  # row i: its inspection error

    def code(self, status: str) -> int:
        if status not in self.names:
            self.names.append(status)
        return self.names.index(status)

    def mark(self, where: np.ndarray, status: str, error: str | Sequence[Any] | _Arrow) -> None:
        """Set the status and error of the rows at positions `where` (ascending or not; an
        array of errors is in the same order)."""
        self.status[where] = self.code(status)
        if isinstance(error, str):
            self.error[where] = self._add(pa.array([error], pa.string()))
        else:
            arrow = isinstance(error, pa.Array | pa.ChunkedArray)
            messages = error if arrow else pa.array(error, pa.string())
            self.error[where] = self._add(messages) + np.arange(len(messages))

    def _add(self, messages: _Arrow) -> int:
        if isinstance(messages, pa.ChunkedArray):
            messages = messages.combine_chunks()
        self._messages.append(messages.cast(pa.string()))
        self._count += len(messages)
        return self._count - len(messages)

    def status_column(self) -> pa.Array:
        return scatter(pa.array(self.names, pa.string()), self.status.astype(np.int64))

    def error_column(self) -> pa.Array:
        return pc.take(pa.concat_arrays(self._messages), pa.array(self.error))


def arrow_of(column: pd.Series) -> pa.ChunkedArray:
    """A pandas column as Arrow (the same buffers where pandas keeps it in Arrow)."""
    return pa.Table.from_pandas(column.to_frame(), preserve_index=False).column(0)


class SourceUrls:
    """The URL each row's sha256 was downloaded from (the last in the scrape_manifest's
    order), matched for all rows and handed out a batch at a time: only the URLs and a
    position per row stay, never a Python string per row. The hashes are looked up a chunk
    of the manifest at a time, so the lookup's hash table holds LOOKUP_CHUNK hashes, not
    the whole history's (a table of every hash cost ~300 B an image at 100,000)."""

    LOOKUP_CHUNK = 16_384

    def __init__(self, scraped: Iterable[pa.Table], shas: pa.ChunkedArray | pa.Array) -> None:
        at = np.full(len(shas), -1, np.int64)
        urls: list[pa.ChunkedArray] = []
        offset = 0
        for chunk in _chunks((p.select(["sha256", "url"]) for p in scraped), self.LOOKUP_CHUNK):
            last = chunk.num_rows - 1
            # index_in finds a hash's first match: among the chunk's hashes in reverse order
            # that is its last; a later chunk's match replaces an earlier one's.
            backwards = pc.take(chunk.column("sha256"), pa.array(np.arange(last, -1, -1)))
            found = pc.index_in(shas, value_set=backwards.cast(shas.type))
            hit = found.is_valid().to_numpy(zero_copy_only=False)
            at[hit] = offset + last - found.filter(hit).to_numpy()
            urls.append(chunk.column("url"))
            offset += chunk.num_rows
        self._at = pa.array(at, mask=at < 0)
        self._urls = pa.chunked_array(
            [c for u in urls for c in u.chunks], _EMPTY_URLS.schema.field("url").type
        )

    @classmethod
    def of(cls, data_dir: Path, shas: pa.ChunkedArray | pa.Array) -> SourceUrls:
        """For these sha256s, from every ok row of the scrape_manifest under this data root."""
        ok = (pc.field("status") == "ok") & pc.field("sha256").is_valid()
        parts = scan_table(
            "scrape_manifest", where=ok, columns=["sha256", "url"], data_dir=data_dir,
            on_damaged="skip",
        )  # fmt: skip
        return cls(parts, shas)

    def batch(self, start: int, stop: int) -> Any:
        """The URLs of rows start..stop (a pandas string array; null where none was scraped)."""
        return self._urls.take(self._at.slice(start, stop - start)).to_pandas().array


def _chunks(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """The tables regrouped (zero-copy) into tables of at least `rows` rows (the last may
    have fewer), in order."""
    pending, count = [], 0
    for table in tables:
        pending.append(table)
        count += table.num_rows
        if count >= rows:
            yield pa.concat_tables(pending)
            pending, count = [], 0
    if pending:
        yield pa.concat_tables(pending)
