"""URL lists read from real CSV, TSV, Parquet and JSON Lines files, as a stream, and triaged
against a real StoredIndex."""

from __future__ import annotations

import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.errors import ConfigError
from storage.parquet import write_table
from tasks.scrape.manifest import manifest_row
from tasks.scrape.stored import StoredIndex
from tasks.scrape.url_list import (
    ListRow,
    ListTriage,
    check_columns,
    list_columns,
    list_rows_at_most,
    read_list,
)

ROWS = [
    {"image": "http://127.0.0.1:1/a.jpg", "class": "cats"},
    {"image": "", "class": "cats"},  # no URL
    {"image": "http://127.0.0.1:1/b.jpg", "class": "dogs"},
    {"image": "  http://127.0.0.1:1/c.jpg ", "class": ""},  # no label; the URL is trimmed
]
EXPECTED = [
    ListRow(1, "http://127.0.0.1:1/a.jpg", "cats"),
    ListRow(2, None, "cats"),
    ListRow(3, "http://127.0.0.1:1/b.jpg", "dogs"),
    ListRow(4, "http://127.0.0.1:1/c.jpg", None),
]


def write_list(path, rows, kind: str) -> None:
    if kind in ("csv", "tsv"):
        sep = "," if kind == "csv" else "\t"
        lines = [sep.join(rows[0])] + [sep.join(r.values()) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet", "jsonl"])
def test_every_format_reads_the_same_rows_in_batches(tmp_path, kind):
    path = tmp_path / f"list.{kind}"
    write_list(path, ROWS, kind)
    assert list_columns(path) == ["image", "class"]
    batches = list(read_list(path, "image", "class", batch_rows=3))
    assert [len(b) for b in batches] == [3, 1]
    assert [row for batch in batches for row in batch] == EXPECTED
    without_labels = [r for b in read_list(path, "image", None, batch_rows=10) for r in b]
    assert [r.label for r in without_labels] == [None] * 4


@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet", "jsonl"])
def test_rows_at_most_is_the_exact_count_of_a_plain_list(tmp_path, kind):
    path = tmp_path / f"list.{kind}"
    write_list(path, ROWS, kind)
    assert list_rows_at_most(path) == len(ROWS) == 4


def test_rows_at_most_counts_every_line_ending_and_a_last_line_without_one(tmp_path):
    path = tmp_path / "list.csv"
    path.write_bytes(b"url,label\r\na,x\rb,y\nc,z")  # CRLF, CR, LF, no end
    assert list_rows_at_most(path) == 3 == sum(map(len, read_list(path, "url", "label", 10)))
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert list_rows_at_most(empty) == 0


LINE_ENDS = st.sampled_from(["\n", "\r", "\r\n"])
FIELD = st.text(st.sampled_from('ab,\t"\r\n {}:'), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["csv", "tsv", "jsonl"]),
    lines=st.lists(st.tuples(FIELD, FIELD), max_size=12),
    ends=st.lists(LINE_ENDS, min_size=13, max_size=13),
    chunk=st.integers(1, 16),
    open_end=st.booleans(),
)
def test_rows_at_most_is_never_below_the_rows_read(
    tmp_path_factory, kind, lines, ends, chunk, open_end
):
    """Whatever the text (quotes, stray line ends, blank lines, chunk edges inside a CRLF), the
    bound is at least what read_list yields, so the progress never passes 100% early."""
    path = tmp_path_factory.mktemp("list") / f"list.{kind}"
    sep = {"csv": ",", "tsv": "\t", "jsonl": ","}[kind]
    header = "url,label" if kind != "tsv" else "url\tlabel"
    body = [header] if kind != "jsonl" else []
    body += [f"{u}{sep}{v}" if kind != "jsonl" else f'{{"url": "{u}"}}{v}' for u, v in lines]
    text = "".join(line + end for line, end in zip(body, ends, strict=False))
    if open_end and body:  # the last line without its end
        text = text.removesuffix(ends[len(body) - 1])
    path.write_bytes(text.encode())
    read = sum(map(len, read_list(path, "url", None, batch_rows=5))) if text else 0
    assert list_rows_at_most(path, chunk=chunk) >= read


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_a_missing_column_is_named_with_the_columns_found(tmp_path, kind):
    path = tmp_path / f"list.{kind}"
    write_list(path, ROWS, kind)
    with pytest.raises(ConfigError, match=r"no column 'url' \(columns found: 'image', 'class'\)"):
        check_columns(path, "url", None)
    with pytest.raises(ConfigError, match="set label_column"):
        check_columns(path, "image", "label")
    check_columns(path, "image", "class")


def test_unknown_formats_and_missing_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown format '\.xlsx'"):
        list_columns(tmp_path / "list.xlsx")
    with pytest.raises(ConfigError, match="is not a file"):
        list_columns(tmp_path / "absent.csv")


def test_unreadable_rows_become_rows_with_an_error(tmp_path):
    csv = tmp_path / "list.csv"
    csv.write_text("url,label\nhttp://h/a.jpg,x\nhttp://h/b.jpg,x,extra\nhttp://h/c.jpg,x\n")
    rows = [r for b in read_list(csv, "url", "label", 10) for r in b]
    assert [r.url for r in rows] == ["http://h/a.jpg", None, "http://h/c.jpg"]
    assert rows[1].error == "3 fields where the header has 2"
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text('{"url": "http://h/a.jpg"}\nnot json\n[1]\n{"url": 7}\n\n{"url": "x"}\n')
    rows = [r for b in read_list(jsonl, "url", "label", 10) for r in b]
    assert [(r.row, r.url, r.error is not None) for r in rows] == [
        (1, "http://h/a.jpg", False), (2, None, True), (3, None, True), (4, None, True),
        (5, "x", False),
    ]  # fmt: skip


def write_long_list(path, kind: str, n: int) -> None:
    urls = [f"http://127.0.0.1:1/img/{i:07d}.jpg" for i in range(n)]
    if kind == "parquet":
        pq.write_table(pa.table({"url": urls, "label": ["x"] * n}), path, row_group_size=20_000)
    elif kind == "csv":
        path.write_text("url,label\n" + "".join(f"{url},x\n" for url in urls))
    else:
        path.write_text("".join(json.dumps({"url": url}) + "\n" for url in urls))


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_a_long_list_is_read_with_memory_of_one_batch(tmp_path, kind):
    """200,000 rows (~10 MB as text, far more as Python objects) read in batches of 500:
    what the reader holds at its peak stays a small fraction of the list."""
    path, n = tmp_path / f"long.{kind}", 200_000
    write_long_list(path, kind, n)
    arrow_peak, rows = 0, 0
    tracemalloc.start()
    try:
        for batch in read_list(path, "url", "label" if kind != "jsonl" else None, 500):
            rows += len(batch)
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == n
    assert python_peak < 2_000_000  # the rows as ListRow objects would take ~40 MB
    assert arrow_peak < 4_000_000  # the list: 7.6 MB in Arrow, 8 MB as text


def test_triage_decides_bad_repeated_stored_and_capped_rows(tmp_path, data_dir):
    stored_file = data_dir / "raw" / "cats" / "aa.jpg"
    stored_file.parent.mkdir(parents=True)
    stored_file.write_bytes(b"x")
    earlier = manifest_row(
        "old", "cats", "list.csv", "http://h/stored.jpg", "ok", sha256="aa",
        path=stored_file.as_posix(), width=40, height=30, format="JPEG", bytes=1,
    )  # fmt: skip
    write_table("scrape_manifest", [earlier], run_id="old", data_dir=data_dir)
    rows = [
        ListRow(1, "http://h/a.jpg", "cats"),
        ListRow(2, None, "cats"),
        ListRow(3, "http://h/b.jpg", "../up"),
        ListRow(4, "http://h/a.jpg", "cats"),  # listed again
        ListRow(5, "http://h/a.jpg", "dogs"),  # the same URL for another class is its own row
        ListRow(6, "http://h/stored.jpg", "cats"),
        ListRow(7, "http://h/late.jpg", "dogs"),  # past max_images=4
        ListRow(8, None, None, error="not JSON"),
    ]
    with StoredIndex.build(tmp_path / "i.sqlite", data_dir, "new") as index:
        triage = ListTriage(index, "new", None, "list.csv", max_images=4)
        todo, decided = triage.split(rows[:4])
        todo2, decided2 = triage.split(rows[4:])
    assert todo == [{"url": "http://h/a.jpg", "page_url": "list.csv", "label": "cats"}]
    assert todo2 == [{"url": "http://h/a.jpg", "page_url": "list.csv", "label": "dogs"}]
    got = [(r["url"], r["label"], r["status"], r["error"]) for r in decided + decided2]
    assert got[0] == ("", "cats", "bad_row", "row 2: no URL")
    assert got[1][:3] == ("http://h/b.jpg", "../up", "bad_row")
    assert got[1][3].startswith("row 3: label '../up' is not a valid name")
    assert got[2] == ("http://h/a.jpg", "cats", "skipped", "row 4 lists it again (first at row 1)")
    assert got[3] == ("http://h/late.jpg", "dogs", "skipped", "beyond max_images=4")
    assert got[4] == ("", "", "bad_row", "row 8: not JSON")
    assert got[5][:4] == ("http://h/stored.jpg", "cats", "skipped", "already stored by run old")
    assert (decided2[-1]["sha256"], decided2[-1]["width"]) == ("aa", 40)
    assert triage.listed == 5 and triage.labels == {"cats", "dogs"}
