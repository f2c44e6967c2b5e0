"""Re-runs replacing a run's parts (new first, old after, exact names) and readers that cope."""

from __future__ import annotations

import logging
import threading
from datetime import date
from pathlib import Path

import pytest

from storage.counts import table_counts
from storage.errors import ConfigError, DamagedFileError
from storage.parquet import (
    read_table,
    replace_parts,
    run_parts,
    write_table,
)
from tasks.scrape.stored import StoredIndex
from tasks.scrape.tasks import clear_parts
from tests.storage.test_parquet import sample_rows

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)


def names(paths) -> list[str]:
    return sorted(f"{p.parent.name}/{p.name}" for p in paths)


def test_replace_parts_removes_the_older_partition_after_the_new_write(data_dir):
    write_table("dataset_manifest", sample_rows("dataset_manifest", "r", 10), run_id="r",
                run_date=DAY1)  # fmt: skip
    write_table("dataset_manifest", sample_rows("dataset_manifest", "other", 4), run_id="other",
                run_date=DAY1)  # fmt: skip
    new = write_table("dataset_manifest", sample_rows("dataset_manifest", "r", 10), run_id="r",
                      run_date=DAY2)  # fmt: skip
    assert len(read_table("dataset_manifest", run_id="r")) == 20  # both until replaced
    removed = replace_parts("dataset_manifest", run_id="r", written=[new])
    assert names(removed) == ["run_date=2026-11-01/r.parquet"]
    assert len(read_table("dataset_manifest", run_id="r")) == 10
    assert len(read_table("dataset_manifest", run_id="other")) == 4  # another run untouched


def test_shards_of_a_group_are_replaced_even_when_fewer(data_dir):
    kw = {"run_id": "r", "run_date": DAY1}
    for n in (1, 2, 3):
        write_table("predictions", sample_rows("predictions", "r"), part=f"m-abc-{n:04d}", **kw)
    other = write_table("predictions", sample_rows("predictions", "r"), part="n-def-0001", **kw)
    kept = write_table("predictions", sample_rows("predictions", "r"), part="m-abc-0001",
                       run_id="r", run_date=DAY2)  # fmt: skip
    removed = replace_parts("predictions", run_id="r", written=[kept], group="m-abc")
    assert names(removed) == [f"run_date=2026-11-01/r-m-abc-{n:04d}.parquet" for n in (1, 2, 3)]
    assert kept.exists() and other.exists()


def test_clearing_label_parts_matches_exact_names(data_dir):
    """Labels `cats` and `cats-0001`: shard 1 of `cats` is named like label `cats-0001`'s prefix."""
    kw = {"run_id": "r", "run_date": DAY1}
    rows = sample_rows("scrape_manifest", "r")
    cats = [write_table("scrape_manifest", rows, part=f"cats-{n:04d}", **kw) for n in (0, 1)]
    other = [write_table("scrape_manifest", rows, part=f"cats-0001-{n:04d}", **kw) for n in (0, 1)]
    assert clear_parts(str(data_dir), "r", "cats-0001") == 2
    assert all(p.exists() for p in cats) and not any(p.exists() for p in other)
    assert clear_parts(str(data_dir), "r", "cats", written=[cats[0]]) == 1
    assert cats[0].exists() and not cats[1].exists()


def test_a_run_id_with_dashes_does_not_take_another_runs_parts(data_dir):
    # run `a` with group `b-x` and run `a-b` with group `x` build the same file name
    theirs = write_table("predictions", sample_rows("predictions", "a-b"), run_id="a-b",
                         run_date=DAY1, part="x-0001")  # fmt: skip
    assert run_parts("predictions", run_id="a", group="b-x") == []
    assert run_parts("predictions", run_id="a-b", group="x") == [theirs]


@pytest.mark.parametrize("run_id", ["*", "../r", "r*", "[r]"])
def test_part_deletion_never_uses_user_input_as_a_pattern(data_dir, monkeypatch, run_id):
    mine = write_table("predictions", sample_rows("predictions", "r"), run_id="r", part="m-0001")
    patterns = []
    real_glob = Path.glob
    monkeypatch.setattr(Path, "glob", lambda self, p: patterns.append(p) or real_glob(self, p))
    with pytest.raises(ConfigError, match="run id"):
        replace_parts("predictions", run_id=run_id, written=[], group="m")
    assert mine.exists() and patterns == []  # refused before listing anything
    assert replace_parts("predictions", run_id="r", written=[], group="m") == [mine]
    assert set(patterns) == {"run_date=*", "*.parquet"}  # constant patterns only


def test_concurrent_readers_never_see_a_part_vanish(data_dir):
    """A writer re-runs one run id, alternating days (so each re-run removes the other day's
    file) while reader threads read; every read succeeds and sees the old or the new rows."""
    rows = sample_rows("dataset_manifest", "r", 10)
    write_table("dataset_manifest", rows, run_id="r", run_date=DAY1)
    seen, errors = [], []
    stop = threading.Event()

    def rerun() -> None:
        try:
            for i in range(60):
                day = (DAY2, DAY1)[i % 2]
                new = write_table("dataset_manifest", rows, run_id="r", run_date=day)
                replace_parts("dataset_manifest", run_id="r", written=[new])
        finally:
            stop.set()

    def read() -> None:
        try:
            while not stop.is_set():
                seen.append(len(read_table("dataset_manifest", run_id="r")))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=rerun)] + [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert seen and set(seen) <= {10, 20}  # 20: between a new write and the old one's removal
    assert len(read_table("dataset_manifest", run_id="r")) == 10


def test_a_zero_byte_part_is_one_line_naming_it(data_dir):
    write_table("scrape_manifest", sample_rows("scrape_manifest", "good"), run_id="good")
    bad = data_dir / "warehouse" / "scrape_manifest" / "run_date=2026-11-01" / "bad.parquet"
    bad.parent.mkdir(parents=True)
    bad.touch()
    with pytest.raises(DamagedFileError) as raised:
        read_table("scrape_manifest")
    message = str(raised.value)
    assert "\n" not in message and str(bad) in message and "0 bytes" in message


def test_readers_that_can_go_on_skip_a_damaged_part_with_a_warning(data_dir, caplog):
    write_table("scrape_manifest", sample_rows("scrape_manifest", "good"), run_id="good")
    bad = data_dir / "warehouse" / "scrape_manifest" / "run_date=2026-11-01" / "bad.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 not really parquet")
    with caplog.at_level(logging.WARNING, logger="pixelpipe.storage"):
        frame = read_table("scrape_manifest", on_damaged="skip")
        counts = table_counts()
    assert frame["run_id"].tolist() == ["good"] * 3
    assert counts["scrape_manifest"] == (3, 1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all(str(bad) in line and "\n" not in line for line in lines)


def test_the_stored_index_goes_on_past_a_damaged_part(data_dir, tmp_path):
    image = data_dir / "raw" / "cats" / "a.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x")
    row = sample_rows("scrape_manifest", "old", 1)[0] | {"label": "cats", "path": str(image)}
    write_table("scrape_manifest", [row], run_id="old")
    bad = data_dir / "warehouse" / "scrape_manifest" / "run_date=2026-11-01" / "bad.parquet"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.touch()
    with StoredIndex.build(tmp_path / "index.sqlite", data_dir, "new", "cats") as index:
        found = index.stored([("cats", row["url"]), ("cats", "http://elsewhere/")])
    assert list(found) == [("cats", row["url"])] and found[("cats", row["url"])]["run_id"] == "old"
