"""What scrape runs stored before, and what this run has seen, in an on-disk SQLite index:
a run of 100,000 URLs checks each shard by key, its memory bounded whatever the history."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from storage.parquet import scan_table

KEPT = ("sha256", "path", "width", "height", "format", "bytes")
_SQL_VARIABLES = 500  # keys per lookup query (SQLite's default limit is 32,766)
_SCHEMA = f"""
PRAGMA journal_mode=OFF;
PRAGMA synchronous=OFF;
CREATE TABLE IF NOT EXISTS stored (label TEXT, url TEXT, run_id TEXT, {", ".join(KEPT)},
                     PRIMARY KEY (label, url)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shas (sha256 TEXT PRIMARY KEY, url TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS listed (label TEXT, url TEXT, row INTEGER,
                                   PRIMARY KEY (label, url)) WITHOUT ROWID;
"""


class StoredIndex:
    """Earlier runs' `ok` rows by (label, URL), the sha256s stored so far, and the URLs this
    run has listed; one file in the flow process's temporary folder, opened (or created) by
    path, so a task of the flow process reopens what the flow built."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.executescript(_SCHEMA)

    @classmethod
    def build(
        cls, path: Path, data_dir: str | Path, run_id: str, label: str | None = None
    ) -> StoredIndex:
        """Index the scrape_manifest's `ok` rows of other runs (of `label`, when given), part
        by part: a re-run of a run id redoes it rather than skipping what it did before."""
        index = cls(path)
        where = (ds.field("status") == "ok") & (ds.field("run_id") != run_id)
        if label is not None:
            where &= ds.field("label") == label
        columns = ["label", "url", "run_id", *KEPT]
        for part in scan_table(
            "scrape_manifest", where=where, columns=columns, data_dir=data_dir, on_damaged="skip"
        ):
            rows = list(zip(*(part.column(c).to_pylist() for c in columns), strict=True))
            index._db.executemany(
                f"INSERT OR REPLACE INTO stored VALUES ({', '.join('?' * len(columns))})", rows
            )
            index._db.executemany(
                "INSERT OR IGNORE INTO shas VALUES (?, '')", ((r[3],) for r in rows if r[3])
            )
        index.commit()
        return index

    def commit(self) -> None:
        """Make what was added visible to the index reopened elsewhere (dedupe_shards)."""
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StoredIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.commit()
        self.close()

    def stored(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """(label, url) -> its earlier `ok` row (run_id and the kept fields), for the keys
        whose file is still there."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        names = ["label", "url", "run_id", *KEPT]
        for chunk in _chunks(list(keys)):
            pairs = " OR ".join(["(label = ? AND url = ?)"] * len(chunk))
            flat = [v for key in chunk for v in key]
            query = f"SELECT {', '.join(names)} FROM stored WHERE {pairs}"
            for values in self._db.execute(query, flat):
                row = dict(zip(names, values, strict=True))
                if row["path"] and Path(row["path"]).is_file():
                    found[(row["label"], row["url"])] = row
        return found

    def first_listing(self, label: str, url: str, row: int) -> int | None:
        """The row that listed (label, url) before this one, or None (this row is the first)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO listed VALUES (?, ?, ?)", (label, url, row)
        )
        if cursor.rowcount:
            return None
        earlier = self._db.execute(
            "SELECT row FROM listed WHERE label = ? AND url = ?", (label, url)
        ).fetchone()
        return earlier[0]

    def shas(self) -> ShaMap:
        """sha256 -> the URL that stored it ("" for an earlier run): duplicates() grows it."""
        return ShaMap(self._db)


class ShaMap(MutableMapping[str, str]):
    """The `first` mapping of tasks.scrape.manifest.duplicates, kept in the index's file."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __getitem__(self, sha: str) -> str:
        found = self._db.execute("SELECT url FROM shas WHERE sha256 = ?", (sha,)).fetchone()
        if found is None:
            raise KeyError(sha)
        return found[0]

    def __contains__(self, sha: object) -> bool:
        query = "SELECT 1 FROM shas WHERE sha256 = ?"
        return self._db.execute(query, (sha,)).fetchone() is not None

    def __setitem__(self, sha: str, url: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO shas VALUES (?, ?)", (sha, url))

    def __delitem__(self, sha: str) -> None:
        self._db.execute("DELETE FROM shas WHERE sha256 = ?", (sha,))

    def __iter__(self) -> Iterator[str]:
        return (sha for (sha,) in self._db.execute("SELECT sha256 FROM shas"))

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM shas").fetchone()[0]


def _chunks(keys: list[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    for start in range(0, len(keys), _SQL_VARIABLES // 2):
        yield keys[start : start + _SQL_VARIABLES // 2]
