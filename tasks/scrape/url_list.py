"""URL lists (CSV, TSV, Parquet, JSON Lines) read as a stream of (row, url, label) batches,
memory holding one batch whatever the list's length; and each row triaged before download."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import ConfigError
from storage.layout import safe_name
from tasks.scrape.manifest import manifest_row
from tasks.scrape.stored import KEPT, StoredIndex

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
SLICE_ROWS = 1024  # Parquet rows turned into Python objects at once
MAX_LABEL_SHOWN = 200  # an unusable label is recorded, cut to this many characters


@dataclass(frozen=True)
class ListRow:
    """One data row of a URL list: its number (1 = the first row after the header), its URL
    and label as found (None when absent or empty), or `error` when the row is unreadable."""

    row: int
    url: str | None
    label: str | None
    error: str | None = None


def list_format(path: str | Path) -> str:
    """csv, tsv, parquet or jsonl, from the file name; ConfigError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(
            f"url_list {path}: unknown format {suffix or '(no suffix)'!r}; use one of"
            f" {', '.join(FORMATS)}"
        )
    return FORMATS[suffix]


def list_columns(path: str | Path) -> list[str]:
    """The column names of a URL list, from its header (JSON Lines: the first object's keys)."""
    path = Path(path)
    kind = list_format(path)
    if not path.is_file():
        raise ConfigError(f"url_list {path} is not a file")
    if kind == "parquet":
        return pq.ParquetFile(path).schema_arrow.names
    if kind == "jsonl":
        return list(_first_object(path))
    with _csv_lines(path, kind) as reader:
        return next(reader, [])


def list_rows_at_most(path: str | Path, chunk: int = 1 << 20) -> int:
    """How many data rows the list has at most, for its progress (read_list's count may be
    lower: blank lines, rows spanning lines): Parquet's own count, else its lines, read a chunk
    at a time, less a CSV or TSV header. A line ends at \n, \r or \r\n, as read_list reads."""
    path = Path(path)
    kind = list_format(path)
    if kind == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    lines, last = 0, b"\n"
    with path.open("rb") as data:
        while block := data.read(chunk):
            lines += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            last = block[-1:]
    lines += last not in (b"\n", b"\r")  # a last line without its end
    return max(lines - (kind != "jsonl"), 0)


def check_columns(path: str | Path, url_column: str, label_column: str | None) -> None:
    """Before any download: the URL column (and the label column when labels come from the
    list) must be there; the error names the columns found and the option to change."""
    found = list_columns(path)
    for option, column in (("url_column", url_column), ("label_column", label_column)):
        if column is not None and column not in found:
            shown = ", ".join(map(repr, found)) or "none"
            raise ConfigError(
                f"url_list {path} has no column {column!r} (columns found: {shown}); "
                f"set {option} to the one that holds it"
            )


def read_list(
    path: str | Path, url_column: str, label_column: str | None, batch_rows: int
) -> Iterator[list[ListRow]]:
    """The list's rows in file order, `batch_rows` at a time (the last batch may be shorter).
    Call check_columns first: a missing column here fails, but after earlier batches."""
    kind = list_format(path)
    if kind == "jsonl":
        rows = _jsonl_rows(Path(path), url_column, label_column)
    elif kind == "parquet":
        rows = _parquet_rows(Path(path), url_column, label_column)
    else:
        rows = _csv_rows(Path(path), kind, url_column, label_column)
    batch: list[ListRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_rows:
            yield batch
            batch = []
    if batch:
        yield batch


# --- formats -------------------------------------------------------------------------------


def _parquet_rows(path: Path, url_column: str, label_column: str | None) -> Iterator[ListRow]:
    """Parquet a slice of rows at a time (pre_buffer off: it reads whole row groups ahead,
    and a writer may make those huge)."""
    columns = [url_column] + ([label_column] if label_column else [])
    number = 0
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(SLICE_ROWS, columns=columns):
        urls = _strings(batch.column(0))
        labels = _strings(batch.column(1)) if label_column else [None] * len(urls)
        for url, label in zip(urls, labels, strict=True):
            number += 1
            yield ListRow(number, url, label)


def _csv_rows(
    path: Path, kind: str, url_column: str, label_column: str | None
) -> Iterator[ListRow]:
    """CSV/TSV line by line with the standard csv module. (pyarrow's streaming CSV reader
    reads ahead without bound: 34 MB held of a 37 MB list, measured, whatever its block.)"""
    with _csv_lines(path, kind) as reader:
        header = next(reader, [])
        at_url = header.index(url_column)
        at_label = header.index(label_column) if label_column else None
        number = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:  # a field over csv's size limit, a stray NUL
                number += 1
                yield ListRow(number, None, None, error=f"unreadable: {e}")
                continue
            if not fields:
                continue  # a blank line is no row
            number += 1
            if len(fields) != len(header):
                error = f"{len(fields)} fields where the header has {len(header)}"
                yield ListRow(number, None, None, error=error)
                continue
            label = fields[at_label].strip() or None if at_label is not None else None
            yield ListRow(number, fields[at_url].strip() or None, label)


@contextmanager
def _csv_lines(path: Path, kind: str) -> Iterator[Iterator[list[str]]]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as lines:
        yield csv.reader(lines, delimiter="\t" if kind == "tsv" else ",")


def _strings(array: pa.ChunkedArray | pa.Array) -> list[str | None]:
    """The column as text (a Parquet label may be an integer), blanks as None."""
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    return [v.strip() or None if v is not None else None for v in array.to_pylist()]


def _first_object(path: Path) -> dict:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.strip():
                try:
                    found = json.loads(line)
                except ValueError as e:
                    raise ConfigError(f"url_list {path}: first line is not JSON: {e}") from e
                if not isinstance(found, dict):
                    raise ConfigError(f"url_list {path}: first line is not a JSON object")
                return found
    return {}


def _jsonl_rows(path: Path, url_column: str, label_column: str | None) -> Iterator[ListRow]:
    """One object per line; a line that is not one (or holds a non-text URL) is a bad row."""
    number = 0
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip():
                continue
            number += 1
            try:
                item = json.loads(line)
            except ValueError as e:
                yield ListRow(number, None, None, error=f"not JSON: {e}")
                continue
            if not isinstance(item, dict):
                yield ListRow(number, None, None, error="not a JSON object")
                continue
            url, label = item.get(url_column), item.get(label_column) if label_column else None
            if url is not None and not isinstance(url, str):
                yield ListRow(number, None, None, error=f"{url_column} is not text: {url!r:.80}")
                continue
            label = None if label is None else str(label).strip() or None
            yield ListRow(number, (url or "").strip() or None, label)


# --- rows -> candidates or manifest rows ---------------------------------------------------------


class ListTriage:
    """Decides each row of a URL list in order: a bad row, a URL listed before (with its
    label), one past `max_images`, or one an earlier run stored becomes a manifest row at
    once; the rest are candidates to download. State lives in the index, not in memory."""

    def __init__(
        self, index: StoredIndex, run_id: str, label: str | None, source: str,
        max_images: int | None,
    ) -> None:  # fmt: skip
        self.index, self.run_id, self.label, self.source = index, run_id, label, source
        self.max_images = max_images
        self.listed = 0  # rows with a usable URL and label so far
        self.labels: set[str] = set()  # their labels: a list has few classes, not one per row

    def split(self, batch: list[ListRow]) -> tuple[list[dict], list[dict]]:
        """(candidates to download, decided manifest rows) of one batch of rows."""
        candidates, decided = [], []
        for row in batch:
            label, why = self._label(row)
            if why is None and not row.url:
                why = "no URL"
            if why is not None:
                decided.append(
                    self._row(row, label or "", "bad_row", error=f"row {row.row}: {why}")
                )
                continue
            self.listed += 1
            self.labels.add(label)
            if (first := self.index.first_listing(label, row.url, row.row)) is not None:
                error = f"row {row.row} lists it again (first at row {first})"
                decided.append(self._row(row, label, "skipped", error=error))
            elif self.max_images is not None and self.listed > self.max_images:
                error = f"beyond max_images={self.max_images}"
                decided.append(self._row(row, label, "skipped", error=error))
            else:
                candidates.append({"url": row.url, "page_url": self.source, "label": label})
        return self._skip_stored(candidates, decided)

    def _label(self, row: ListRow) -> tuple[str | None, str | None]:
        """The row's label and None, or what is shown of it and why it cannot be used."""
        if row.error is not None:
            return None, row.error
        label = self.label or row.label
        if label is None:
            return None, "no label"
        try:
            return safe_name(label, "label"), None
        except ConfigError as e:
            return label[:MAX_LABEL_SHOWN], str(e)

    def _skip_stored(
        self, candidates: list[dict], decided: list[dict]
    ) -> tuple[list[dict], list[dict]]:
        stored = self.index.stored((c["label"], c["url"]) for c in candidates)
        todo = []
        for c in candidates:
            if (old := stored.get((c["label"], c["url"]))) is None:
                todo.append(c)
                continue
            kept = {k: old[k] for k in KEPT}
            error = f"already stored by run {old['run_id']}"
            decided.append(self._row(c, c["label"], "skipped", error=error, **kept))
        self.index.commit()
        return todo, decided

    def _row(self, row: ListRow | dict, label: str, status: str, **fields) -> dict:
        url = row["url"] if isinstance(row, dict) else row.url
        return manifest_row(
            self.run_id, label, self.source, url or "", status, found_in="url_list", **fields
        )
