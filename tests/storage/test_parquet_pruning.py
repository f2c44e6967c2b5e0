"""Warehouse reads open only the part files that can hold the rows asked for, and counts come
from footers. Pinned by counting the files a read may open and by making every other file
unreadable (opening one would raise), never by timing."""

from __future__ import annotations

import struct
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from storage.counts import count_rows, table_counts
from storage.errors import DamagedFileError
from storage.layout import Layout
from storage.parquet import part_files, read_table, write_table
from tests.storage.test_parquet import sample_rows

DAYS = ("2026-11-27", "2026-11-28", "2026-11-29")


@pytest.fixture
def parts(data_dir) -> dict[str, Path]:
    """Five parts over three days; run `r3`'s shard and run `r3-x` share a name prefix."""

    def put(run: str, n: int, day: str, part: str | None = None) -> Path:
        rows = sample_rows("predictions", run, n)
        return write_table("predictions", rows, run_id=run, run_date=day, part=part)

    return {
        "r1": put("r1", 2, DAYS[0]),
        "r2": put("r2", 3, DAYS[0]),
        "r3 shard": put("r3", 2, DAYS[1], part="x-0001"),
        "r3-x": put("r3-x", 1, DAYS[1]),
        "r4": put("r4", 4, DAYS[2]),
    }


def destroy(*paths: Path) -> None:
    """Garbage instead of Parquet: any reader that opens the file fails."""
    for path in paths:
        path.write_bytes(b"not parquet" * 10)


def scramble_rows(path: Path) -> None:
    """Overwrite every data page, keep the footer: reading rows fails, reading the footer
    (row counts, column statistics) does not."""
    data = bytearray(path.read_bytes())
    footer = struct.unpack("<I", data[-8:-4])[0]
    end = len(data) - 8 - footer
    data[4:end] = b"\xff" * (end - 4)
    path.write_bytes(bytes(data))


def opened(run_ids: set[str] | None = None, day: str | None = None) -> list[str]:
    folder = Layout.at(None).table_dir("predictions")
    return [p.name for p in part_files(folder, run_ids, day)]


def test_a_run_is_read_from_its_own_file_only(parts):
    assert opened({"r1"}) == ["r1.parquet"]
    destroy(*(path for name, path in parts.items() if name != "r1"))
    frame = read_table("predictions", run_id="r1", columns=["run_id", "image"])
    assert frame["run_id"].tolist() == ["r1", "r1"] and list(frame.columns) == ["run_id", "image"]


def test_a_day_is_read_from_its_folder_only(parts):
    assert sorted(opened(day=DAYS[1])) == sorted([parts["r3 shard"].name, parts["r3-x"].name])
    destroy(parts["r1"], parts["r2"], parts["r4"])
    frame = read_table("predictions", run_date=DAYS[1])
    assert sorted(frame["run_id"]) == ["r3", "r3", "r3-x"]


def test_runs_that_share_a_name_prefix_are_opened_together_and_filtered(parts):
    """Run `r3` part `x-0001` and run `r3-x` cannot be told apart by name: both files are
    opened for either run, and the rows are filtered by run_id."""
    assert sorted(opened({"r3"})) == sorted([parts["r3 shard"].name, parts["r3-x"].name])
    destroy(parts["r1"], parts["r2"], parts["r4"])
    assert read_table("predictions", run_id="r3")["run_id"].tolist() == ["r3", "r3"]
    assert read_table("predictions", run_id="r3-x")["run_id"].tolist() == ["r3-x"]
    assert opened({"r3-x"}, DAYS[0]) == []


def test_counts_come_from_the_footers(parts):
    for path in parts.values():
        scramble_rows(path)
    with pytest.raises(DamagedFileError):
        read_table("predictions", columns=["run_id"])  # the rows really are unreadable
    assert table_counts()["predictions"] == (12, 5)
    assert count_rows("predictions", run_id="r3") == 2
    assert count_rows("predictions", run_id=["r1", "r4"]) == 6
    assert count_rows("predictions", run_date=DAYS[0]) == 5


def test_a_part_without_statistics_is_counted_from_its_run_id_column(parts):
    table = pq.read_table(parts["r4"])
    pq.write_table(table, parts["r4"], write_statistics=False)
    assert count_rows("predictions", run_id="r4") == 4
    assert table_counts()["predictions"] == (12, 5)


def test_a_limited_read_stops_at_the_files_it_needs(parts):
    everything = read_table("predictions")
    destroy(parts["r3 shard"], parts["r3-x"], parts["r4"])  # after r1 and r2 in part order
    head = read_table("predictions", limit=4)
    assert len(head) == 4
    assert head["image"].tolist() == everything["image"].head(4).tolist()
    assert head["run_id"].tolist() == ["r1", "r1", "r2", "r2"]
    assert read_table("predictions", run_id="r2", limit=10)["run_id"].tolist() == ["r2"] * 3
