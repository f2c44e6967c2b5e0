"""The on-disk index of stored URLs and sha256s: lookups by key, reopened by path."""

from __future__ import annotations

from storage.parquet import write_table
from tasks.scrape.manifest import duplicates, manifest_row
from tasks.scrape.stored import StoredIndex


def test_sha256s_stored_before_and_by_earlier_shards_make_duplicates(tmp_path, data_dir):
    old = manifest_row("old", "cats", "p", "http://h/old.jpg", "ok", sha256="s-old")
    write_table("scrape_manifest", [old], run_id="old", data_dir=data_dir)
    path = tmp_path / "index.sqlite"
    with StoredIndex.build(path, data_dir, "new", "cats") as index:
        first = index.shas()
        shard_1 = [("http://h/a.jpg", "ok", "s-a"), ("http://h/b.jpg", "ok", "s-old")]
        assert duplicates(shard_1, first) == {1: "already stored by an earlier run"}
    with StoredIndex(path) as index:  # dedupe_shards reopens what the flow built
        shard_2 = [("http://h/c.jpg", "ok", "s-a"), ("http://h/d.jpg", "http_error", None)]
        assert duplicates(shard_2, index.shas()) == {0: "same bytes as http://h/a.jpg"}
        assert len(index.shas()) == 2


def test_a_run_id_rerun_and_other_labels_are_not_stored_before(tmp_path, data_dir):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    rows = [
        manifest_row("old", "cats", "p", "http://h/a.jpg", "ok", path=str(image)),
        manifest_row("old", "dogs", "p", "http://h/b.jpg", "ok", path=str(image)),
        manifest_row("old", "cats", "p", "http://h/c.jpg", "http_error"),
    ]
    write_table("scrape_manifest", rows, run_id="old", data_dir=data_dir)
    keys = [("cats", "http://h/a.jpg"), ("cats", "http://h/b.jpg"), ("cats", "http://h/c.jpg")]
    with StoredIndex.build(tmp_path / "1.sqlite", data_dir, "new") as index:
        assert list(index.stored(keys)) == [("cats", "http://h/a.jpg")]
        image.unlink()  # a file deleted since is not stored any more
        assert index.stored(keys) == {}
    with StoredIndex.build(tmp_path / "2.sqlite", data_dir, "old") as index:
        assert index.stored(keys) == {}  # redoing run `old` skips none of its own rows
