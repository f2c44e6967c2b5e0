"""scrape_manifest rows: complete rows, duplicates decided in page order, hosts interleaved."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, MutableMapping

import pyarrow.dataset as ds

from storage.parquet import scan_table
from storage.schemas import SCRAPE_MANIFEST
from tasks.scrape.hosts import HostKey, host_key, without_user_info

# --- manifest rows -----------------------------------------------------------------------------

COLUMNS = tuple(field.name for field in SCRAPE_MANIFEST)
REFUSALS_KEPT_FOR_PAGES = frozenset({"blocked", "robots_disallowed", "unsupported_scheme"})
URL_COLUMNS = tuple(c for c in ("page_url", "url", "final_url") if c in COLUMNS)


def manifest_row(run_id: str, label: str, page_url: str, url: str, status: str, **fields) -> dict:
    """A complete scrape_manifest row: every column present, unknown ones refused. Every URL
    column loses its user info here, the one way rows are made: no table stores credentials."""
    row = dict.fromkeys(COLUMNS)
    row.update(run_id=run_id, label=label, page_url=page_url, url=url, status=status)
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not scrape_manifest columns: {sorted(unknown)}")
    row.update(fields)
    for column in URL_COLUMNS:
        row[column] = without_user_info(row[column])
    return row


def status_reasons(rows: Iterable[tuple[str, str | None]], top: int = 3) -> dict:
    """{status: [(reason, rows), ...]} of the (status, error) pairs whose status is not ok,
    the most common reasons first (at most `top` each): what a summary says went wrong."""
    grouped: dict[str, Counter[str]] = {}
    for status, error in rows:
        if status != "ok":
            grouped.setdefault(status, Counter())[error if isinstance(error, str) else ""] += 1
    return {status: reasons.most_common(top) for status, reasons in grouped.items()}


def run_reasons(data_dir: str, run_id: str, label: str | None) -> dict:
    """status_reasons of a run's written rows (of `label`, when given), read back a part at a
    time: two columns of the rows that are not ok, never the whole run at once."""
    where = ds.field("status") != "ok"
    if label:
        where &= ds.field("label") == label
    parts = scan_table(
        "scrape_manifest", where=where, columns=["status", "error"], data_dir=data_dir,
        run_id=run_id,
    )  # fmt: skip
    return status_reasons(
        pair
        for part in parts
        for pair in zip(part["status"].to_pylist(), part["error"].to_pylist(), strict=True)
    )


def mark_duplicates(rows: list[dict], known: Iterable[str] = ()) -> list[dict]:
    """Rows in page order: an `ok` row whose bytes an earlier row (or an earlier run, `known`
    sha256s) already stored becomes `duplicate`. Deciding here, in order, rather than in the
    race between download threads makes the outcome the same on every run."""
    triples = ((row["url"], row["status"], row.get("sha256")) for row in rows)
    why = duplicates(triples, dict.fromkeys(known, ""))
    return [
        {**row, "status": "duplicate", "error": why[i]} if i in why else row
        for i, row in enumerate(rows)
    ]


def duplicates(
    rows: Iterable[tuple[str, str, str | None]], first: MutableMapping[str, str]
) -> dict:
    """The duplicate rule, once: {index: reason} of the (url, status, sha256) rows in page order
    whose bytes were stored before. `first` maps sha256 -> the URL that stored it ("" for an
    earlier run) and grows, so shards decided one after another share it."""
    why: dict[int, str] = {}
    for i, (url, status, sha) in enumerate(rows):
        if status == "ok" and sha in first:
            earlier = first[sha]
            why[i] = f"same bytes as {earlier}" if earlier else "already stored by an earlier run"
        elif status == "ok":
            first[sha] = url
    return why


def interleave_by_host(urls: list[str]) -> list[int]:
    """Indices of `urls` taking one per host in turn, so workers blocked on one host's limit
    do not leave other hosts' downloads waiting behind them in the queue."""
    by_host: dict[HostKey | None, list[int]] = {}
    for i, url in enumerate(urls):
        key: HostKey | None = None  # no host key (data:, unparsable): one queue for them all
        with contextlib.suppress(ValueError):
            key = host_key(url)
        by_host.setdefault(key, []).append(i)
    queues = list(by_host.values())
    order: list[int] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        order += [q[rank] for q in queues if rank < len(q)]
    return order
