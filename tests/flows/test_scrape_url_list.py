"""scrape_images reading a URL list (CSV, TSV, Parquet, JSON Lines) against the loopback site."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.params import PipelineParams, ScrapeParams
from flows.scrape_images import scrape_images
from storage.errors import ConfigError
from storage.parquet import read_table
from tests.flows.artifacts import progress_artifacts
from tests.http_server import SiteServer

pytestmark = pytest.mark.usefixtures("prefect_harness")

IMAGES = {  # path -> label
    "img/plain.jpg": "cats",
    "img/plain-copy.jpg": "cats",  # the same bytes as plain.jpg
    "img/large.webp": "dogs",
    "img/og.png": "dogs",
    "img/thumb.jpg": "dogs",  # too small
    "status/404": "dogs",
    "private/secret.jpg": "cats",  # robots.txt disallows /private/
}


@pytest.fixture(scope="module")
def site():
    with SiteServer() as server:
        yield server


def rows_for(site) -> list[dict]:
    rows = [{"url": site.url(path), "label": label} for path, label in IMAGES.items()]
    rows.append({"url": "", "label": "cats"})  # no URL
    rows.append({"url": site.url("img/lazy.png"), "label": "../up"})  # an unusable label
    rows.append({"url": site.url("img/plain.jpg"), "label": "cats"})  # listed again
    return rows


def write_list(path, rows: list[dict]) -> str:
    kind = path.suffix
    if kind in (".csv", ".tsv"):
        sep = "," if kind == ".csv" else "\t"
        lines = [f"url{sep}label"] + [f"{r['url']}{sep}{r['label']}" for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif kind == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def params(url_list: str, data_dir, **overrides) -> dict:
    base = {
        "url_list": url_list, "data_dir": str(data_dir), "allow_private_networks": True,
        "backoff": 0.01, "timeout": 2.0, "retries": 0,
    }  # fmt: skip
    return {**base, **overrides}


def statuses(site, run_id: str, data_dir) -> list[tuple[str, str, str]]:
    rows = read_table("scrape_manifest", data_dir=data_dir, run_id=run_id)
    short = [u.removeprefix(site.base + "/") for u in rows.url]
    return sorted(zip(short, rows.label, rows.status, strict=True))


@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet", "jsonl"])
def test_a_url_list_gets_a_row_per_url_and_images_per_label(site, data_dir, tmp_path, kind):
    url_list = write_list(tmp_path / f"list.{kind}", rows_for(site))
    result = scrape_images(params=params(url_list, data_dir, run_id="list-1", shard_size=3))
    assert statuses(site, "list-1", data_dir) == [
        ("", "cats", "bad_row"),
        ("img/large.webp", "dogs", "ok"),
        ("img/lazy.png", "../up", "bad_row"),
        ("img/og.png", "dogs", "ok"),
        ("img/plain-copy.jpg", "cats", "duplicate"),
        ("img/plain.jpg", "cats", "ok"),
        ("img/plain.jpg", "cats", "skipped"),  # listed again
        ("img/thumb.jpg", "dogs", "too_small"),
        ("private/secret.jpg", "cats", "robots_disallowed"),
        ("status/404", "dogs", "http_error"),
    ]
    assert result.counts == {
        "ok": 3, "duplicate": 1, "http_error": 1, "too_small": 1, "robots_disallowed": 1,
        "skipped": 1, "bad_row": 2,
    }  # fmt: skip
    assert (result.label, result.candidates, result.labels) == ("list", 8, ["cats", "dogs"])
    assert len(result.manifest_files) == 4  # 10 rows, 3 per shard
    assert sorted(p.name for p in (data_dir / "raw" / "dogs").iterdir()) == sorted(
        read_table("scrape_manifest", data_dir=data_dir, run_id="list-1")
        .query("status == 'ok' and label == 'dogs'")
        .path.map(lambda p: p.rsplit("/", 1)[1])
    )
    assert site.hits("img/lazy.png") == []  # a bad row is never fetched


def test_the_list_shows_one_progress_artifact_whatever_its_shards(site, data_dir, tmp_path):
    url_list = write_list(tmp_path / "list.csv", rows_for(site))
    state = scrape_images(params=params(url_list, data_dir, shard_size=3), return_state=True)
    assert len(state.result().manifest_files) == 4  # 10 rows, 3 per shard
    shown = progress_artifacts(state.state_details.flow_run_id)
    assert shown == [("Downloading the list's 10 row(s) at most", 100.0)]


def test_a_rerun_downloads_only_what_is_not_stored(site, data_dir, tmp_path):
    url_list = write_list(tmp_path / "list.csv", rows_for(site))
    scrape_images(params=params(url_list, data_dir, run_id="first"))
    site.reset_stats()
    again = scrape_images(params=params(url_list, data_dir, run_id="second", shard_size=2))
    fetched = {h.path.lstrip("/") for h in site.stats.hits}
    assert fetched.isdisjoint({"img/plain.jpg", "img/large.webp", "img/og.png"})
    assert again.counts["skipped"] == 4 and "ok" not in again.counts
    rows = read_table("scrape_manifest", data_dir=data_dir, run_id="second")
    kept = rows[rows.error == "already stored by run first"]
    assert len(kept) == 3 and kept.sha256.notna().all() and kept.path.notna().all()


def test_one_label_for_every_row_and_other_column_names(site, data_dir, tmp_path):
    rows = [{"link": site.url("img/og.png")}, {"link": site.url("img/large.webp")}]
    url_list = write_list(tmp_path / "list.jsonl", rows)
    p = params(url_list, data_dir, run_id="one-label", label="birds", url_column="link")
    result = scrape_images(params=p)
    assert result.counts == {"ok": 2} and result.labels == ["birds"]
    assert len(list((data_dir / "raw" / "birds").iterdir())) == 2


def test_a_missing_column_fails_before_any_download(site, data_dir, tmp_path):
    url_list = write_list(tmp_path / "list.parquet", rows_for(site))
    site.reset_stats()
    with pytest.raises(ConfigError, match=r"no column 'link' \(columns found: 'url', 'label'\)"):
        scrape_images(params=params(url_list, data_dir, url_column="link"))
    with pytest.raises(ConfigError, match="no column 'class'"):
        scrape_images(params=params(url_list, data_dir, label_column="class"))
    assert site.stats.hits == []


def test_pages_or_a_url_list_and_the_pipeline_takes_it_too(tmp_path):
    with pytest.raises(ValueError, match="give pages or url_list"):
        ScrapeParams(pages=["http://a.invalid/"], url_list="l.csv", label="x")
    with pytest.raises(ValueError, match="pages need a label"):
        ScrapeParams(pages=["http://a.invalid/"])
    pipeline = PipelineParams(scrape={"url_list": "l.csv", "label_column": "class"})
    assert pipeline.scrape.url_list == "l.csv"
    with pytest.raises(ValueError, match="give only one of sources, url_list"):
        PipelineParams(sources=["x=http://a.invalid/"], scrape={"url_list": "l.csv"})
