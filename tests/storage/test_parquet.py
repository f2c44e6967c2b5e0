from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from storage import files
from storage.counts import table_counts
from storage.errors import SchemaError
from storage.parquet import read_table, write_table
from storage.schemas import STATUSES, TABLES, VOCABULARIES


def sample_value(field: pa.Field, i: int):
    t = field.type
    if field.name == "status":
        return "ok"
    closed = [v for vocab in VOCABULARIES.values() for c, v in vocab.items() if c == field.name]
    if closed:  # another closed column (models.decision, curation.verdict and .check)
        return closed[0][0]
    if pa.types.is_list(t):
        return [sample_value(pa.field(field.name, t.value_type), i)]
    if pa.types.is_map(t):
        return {f"{field.name}-{i}": 0.25 * (i + 1)}
    if pa.types.is_string(t):
        return f"{field.name}-{i}"
    if pa.types.is_integer(t):
        return i + 1
    if pa.types.is_floating(t):
        return 0.25 * (i + 1)
    if pa.types.is_boolean(t):
        return i % 2 == 0
    if pa.types.is_timestamp(t):
        return datetime(2026, 11, 28, 12, 0, i, tzinfo=UTC)
    raise AssertionError(f"no sample for {t}")


def sample_rows(table: str, run_id: str, n: int = 3) -> list[dict]:
    rows = [{f.name: sample_value(f, i) for f in TABLES[table]} for i in range(n)]
    for row in rows:
        row["run_id"] = run_id
    return rows


@pytest.mark.parametrize("table", list(TABLES))
def test_round_trip_every_table(table, data_dir):
    rows = sample_rows(table, "run-a")
    path = write_table(table, rows, run_id="run-a", run_date=date(2026, 11, 28))
    assert path == data_dir / "warehouse" / table / "run_date=2026-11-28" / "run-a.parquet"
    frame = read_table(table)
    assert list(frame.columns) == [*TABLES[table].names, "run_date"]
    expected = pd.DataFrame(rows)
    back = frame.drop(columns="run_date")
    for column in TABLES[table].names:
        got, want = back[column].tolist(), expected[column].tolist()
        if pa.types.is_floating(TABLES[table].field(column).type):
            assert got == pytest.approx(want)
        elif pa.types.is_timestamp(TABLES[table].field(column).type):
            assert [pd.Timestamp(v) for v in got] == [pd.Timestamp(v) for v in want]
        elif pa.types.is_list(TABLES[table].field(column).type):  # read back as arrays
            assert [list(v) for v in got] == want, column
        elif pa.types.is_map(TABLES[table].field(column).type):  # read back as (key, value)s
            assert [dict(v) for v in got] == want, column
        else:
            assert got == want, column
    assert set(frame["run_date"]) == {"2026-11-28"}


def test_nullable_columns_accept_none_and_keep_types(data_dir):
    row = dict(sample_rows("scrape_manifest", "r", 1)[0], http_status=None, sha256=None)
    write_table("scrape_manifest", [row], run_id="r")
    frame = read_table("scrape_manifest")
    assert frame["http_status"].isna().all() and frame["sha256"].isna().all()
    assert str(frame["width"].dtype) == "Int32" and frame.loc[0, "width"] == 1


SCHEMA_CHANGES = [
    (lambda r: r.pop("label"), r"scrape_manifest: missing column 'label'"),
    (lambda r: r.update(colour="red"), r"scrape_manifest: unexpected column 'colour'"),
    (lambda r: r.update(http_status="200"), r"scrape_manifest\.http_status: values"),
    (lambda r: r.update(url=None), r"scrape_manifest\.url: 1 null value"),
    (lambda r: r.update(status="great"), r"scrape_manifest\.status: unknown value"),
]


@pytest.mark.parametrize(("change", "message"), SCHEMA_CHANGES)
def test_schema_violation_raises_and_writes_nothing(change, message, data_dir):
    row = sample_rows("scrape_manifest", "r", 1)[0]
    change(row)
    with pytest.raises(SchemaError, match=message):
        write_table("scrape_manifest", [row], run_id="r")
    assert not (data_dir / "warehouse").exists() or not any((data_dir / "warehouse").rglob("*"))


@pytest.mark.parametrize("change", [r for r, _ in SCHEMA_CHANGES[2:]])
def test_a_data_frame_is_checked_like_rows(change, data_dir):
    """A DataFrame's columns go to Arrow as they are (no Python object per cell), and are
    checked as strictly: text in a number column is refused even as pandas' Arrow strings."""
    rows = sample_rows("scrape_manifest", "r", 2)
    change(rows[0])
    frame = pd.DataFrame(rows).astype({"http_status": "str"} if rows[0]["http_status"] else {})
    with pytest.raises(SchemaError):
        write_table("scrape_manifest", frame, run_id="r")
    good = pd.DataFrame(sample_rows("scrape_manifest", "r", 2)).astype({"url": "str"})
    write_table("scrape_manifest", good, run_id="r")
    assert read_table("scrape_manifest")["url"].tolist() == good["url"].tolist()


def test_rows_of_another_run_are_refused(data_dir):
    with pytest.raises(SchemaError, match="run_id"):
        write_table("epoch_history", sample_rows("epoch_history", "other"), run_id="mine")


def test_unknown_table_is_a_clear_error(data_dir):
    with pytest.raises(SchemaError, match="unknown table 'nope'"):
        read_table("nope")


def test_a_write_that_dies_half_way_leaves_no_visible_file(data_dir, monkeypatch):
    seen = []

    def crash(path):
        seen.append(path)
        assert path.exists()  # the temporary file was written...
        raise OSError("disk pulled out")  # ...and the writer dies before the rename

    monkeypatch.setattr(files, "fsync", crash)
    with pytest.raises(OSError, match="disk pulled out"):
        write_table("batch_history", sample_rows("batch_history", "r"), run_id="r")
    folder = data_dir / "warehouse" / "batch_history"
    assert seen and seen[0].name.startswith(".")
    assert [p for p in folder.rglob("*") if p.is_file()] == []
    assert read_table("batch_history").empty


def test_rewriting_a_run_replaces_its_file(data_dir):
    write_table("epoch_history", sample_rows("epoch_history", "r", 1), run_id="r")
    write_table("epoch_history", sample_rows("epoch_history", "r", 2), run_id="r")
    assert len(read_table("epoch_history")) == 2


def test_two_runs_on_one_day_are_two_files_and_both_read_back(data_dir):
    day = date(2026, 11, 28)
    write_table("predictions", sample_rows("predictions", "run-a", 2), run_id="run-a", run_date=day)
    write_table("predictions", sample_rows("predictions", "run-b", 3), run_id="run-b", run_date=day)
    files = sorted(p.name for p in (data_dir / "warehouse" / "predictions").rglob("*.parquet"))
    assert files == ["run-a.parquet", "run-b.parquet"]
    assert len(read_table("predictions")) == 5
    assert read_table("predictions", run_id="run-b")["run_id"].unique().tolist() == ["run-b"]
    assert len(read_table("predictions", run_id=["run-a", "run-b"])) == 5


def test_filter_by_date_and_parts(data_dir):
    write_table(
        "predictions", sample_rows("predictions", "r1", 1), run_id="r1", run_date="2026-11-27"
    )
    write_table(
        "predictions",
        sample_rows("predictions", "r2", 2),
        run_id="r2",
        run_date="2026-11-28",
        part="0001",
    )
    write_table(
        "predictions",
        sample_rows("predictions", "r2", 2),
        run_id="r2",
        run_date="2026-11-28",
        part="0002",
    )
    assert len(read_table("predictions", run_date="2026-11-28")) == 4
    assert read_table("predictions", run_date=date(2026, 11, 27))["run_id"].tolist() == ["r1"]


@pytest.mark.parametrize("table", list(TABLES))
def test_absent_or_empty_table_reads_as_empty_frame_with_columns(table, data_dir):
    assert read_table(table).empty
    assert list(read_table(table).columns) == [*TABLES[table].names, "run_date"]
    write_table(table, [], run_id="empty")
    frame = read_table(table)
    assert frame.empty and list(frame.columns) == [*TABLES[table].names, "run_date"]


def test_other_tools_read_the_same_folder(data_dir):
    write_table(
        "predictions", sample_rows("predictions", "r", 2), run_id="r", run_date="2026-11-28"
    )
    dataset = ds.dataset(data_dir / "warehouse" / "predictions", partitioning="hive")
    assert dataset.to_table().num_rows == 2
    assert pd.read_parquet(data_dir / "warehouse" / "predictions").shape[0] == 2


def test_table_counts(data_dir):
    write_table("predictions", sample_rows("predictions", "a", 2), run_id="a")
    write_table("predictions", sample_rows("predictions", "b", 1), run_id="b")
    counts = table_counts()
    assert counts["predictions"] == (3, 2)
    assert counts["scrape_manifest"] == (0, 0)


def test_every_status_vocabulary_is_closed_and_has_ok():
    for table, statuses in STATUSES.items():
        assert "ok" in statuses and "status" in TABLES[table].names
