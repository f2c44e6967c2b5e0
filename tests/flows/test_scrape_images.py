"""scrape_images as a real Prefect flow against the loopback test site."""

import hashlib
import threading
from pathlib import Path

import pytest
from prefect.exceptions import ParameterTypeError
from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.cli.output import scrape_summary
from flows.scrape_images import scrape_images
from storage.errors import ConfigError
from storage.parquet import read_table
from tests.flows.artifacts import progress_artifacts
from tests.http_server import SiteServer

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def site():
    extra = {
        "again.html": b'<img src="gallery/img/g1.jpg"><img src="img/g1-elsewhere.jpg">',
    }
    with SiteServer(files=extra) as server:
        server.files["img/g1-elsewhere.jpg"] = server.files["gallery/img/g1.jpg"]
        yield server


def params(site, data_dir, pages, **overrides):
    base = {
        "pages": [site.url(p) for p in pages],
        "label": "things",
        "data_dir": str(data_dir),
        "allow_private_networks": True,
        "backoff": 0.01,
        "timeout": 2.0,
    }
    return {**base, **overrides}


def statuses(site, run_id: str, data_dir) -> dict[str, str]:
    """URL (relative to the site, or its first 11 characters) -> status, for one run."""
    rows = read_table("scrape_manifest", data_dir=data_dir, run_id=run_id)
    short = {
        u: u.removeprefix(site.base + "/") if u.startswith(site.base) else u[:11] for u in rows.url
    }
    return {short[r.url]: r.status for r in rows.itertuples()}


def test_a_run_records_every_url_and_stores_the_good_images(site, data_dir):
    pages = ["index.html", "gallery/page1.html", "missing.html"]
    result = scrape_images(params=params(site, data_dir, pages, follow_pages=5, run_id="run-a"))
    assert statuses(site, "run-a", data_dir) == {
        "missing.html": "page_error",
        "img/og.png": "ok",
        "img/plain.jpg": "ok",
        "img/large.webp": "ok",
        "img/lazy.png": "ok",
        "img/pic-2x.bmp": "ok",
        "img/full.gif": "ok",
        "img/thumb.jpg": "too_small",
        "img/plain-copy.jpg": "duplicate",
        "data:image/": "ok",
        "javascript:": "unsupported_scheme",
        "ftp://examp": "unsupported_scheme",
        "gallery/img/g1.jpg": "ok",
        "gallery/img/g2.jpg": "ok",
        "gallery/img/g3.jpg": "ok",
    }
    assert result.run_id == "run-a" and result.label == "things"
    assert (result.pages, result.candidates, result.stored) == (4, 14, 10)
    assert result.counts == {
        "ok": 10, "duplicate": 1, "too_small": 1, "unsupported_scheme": 2, "page_error": 1
    }  # fmt: skip
    raw = data_dir / "raw" / "things"
    assert result.raw_dir == raw.as_posix()
    assert [Path(f).name for f in result.manifest_files] == [
        "run-a-things-0000.parquet",  # the unreadable page
        "run-a-things-0001.parquet",  # the one download shard
    ]
    stored = {p.name for p in raw.iterdir()}
    assert len(stored) == 10
    for name in stored:
        assert hashlib.sha256((raw / name).read_bytes()).hexdigest() == name.split(".")[0]
    assert "ok 10, duplicate 1, too_small 1, unsupported_scheme 2" in scrape_summary(result)


def test_download_progress_is_one_prefect_artifact_per_run_whatever_its_shards(site, data_dir):
    p = params(
        site, data_dir, ["gallery/page1.html"], run_id="run-p", label="progress-check",
        follow_pages=5, shard_size=1,
    )  # fmt: skip
    state = scrape_images(params=p, return_state=True)
    result = state.result()
    assert len(result.manifest_files) == 3  # three shards of one image
    shown = progress_artifacts(state.state_details.flow_run_id)
    downloads = [(d, v) for d, v in shown if d.startswith("Downloading")]
    assert downloads == [("Downloading 3 image(s) for 'progress-check'", 100.0)]


def test_a_rerun_downloads_only_what_it_does_not_have(site, data_dir):
    scrape_images(params=params(site, data_dir, ["gallery/page1.html"], run_id="run-1"))
    site.reset_stats()
    again = scrape_images(params=params(site, data_dir, ["again.html"], run_id="run-2"))
    assert statuses(site, "run-2", data_dir) == {
        "gallery/img/g1.jpg": "skipped",  # stored ok by run-1: not requested again
        "img/g1-elsewhere.jpg": "duplicate",  # new URL, bytes run-1 already stored
    }
    assert site.hits("gallery/img/g1.jpg") == [] and len(site.hits("img/g1-elsewhere.jpg")) == 1
    rows = read_table("scrape_manifest", data_dir=data_dir, run_id="run-2").set_index("url")
    skipped = rows.loc[site.url("gallery/img/g1.jpg")]
    assert skipped["error"] == "already stored by run run-1" and skipped["path"].endswith(".jpg")
    assert again.counts == {"duplicate": 1, "skipped": 1} and again.stored == 0
    # Re-running the same run id redoes that run instead of skipping its own work.
    redo = scrape_images(params=params(site, data_dir, ["gallery/page1.html"], run_id="run-1"))
    assert redo.counts == {"ok": 1}
    assert len(read_table("scrape_manifest", data_dir=data_dir, run_id="run-1")) == 1


def test_two_labels_in_one_run_keep_both_manifests(site, data_dir):
    for label in ("cats", "dogs"):
        p = params(site, data_dir, ["gallery/page1.html"], run_id="shared", label=label)
        scrape_images(params=p)
    rows = read_table("scrape_manifest", data_dir=data_dir, run_id="shared")
    assert sorted(rows["label"]) == ["cats", "dogs"] and set(rows["status"]) == {"ok"}


def test_private_addresses_are_blocked_by_default(site, data_dir):
    p = params(site, data_dir, ["index.html"], run_id="run-b")
    del p["allow_private_networks"]
    result = scrape_images(params=p)
    assert result.counts == {"blocked": 1} and result.pages == 0
    assert site.stats.hits == []


def test_bad_parameters_fail_before_any_request(site, data_dir):
    # Prefect validates the parameter model before the run starts: nothing is fetched.
    with pytest.raises(ParameterTypeError, match=r"label '\.\./\.\./etc' is not a valid name"):
        scrape_images(params=params(site, data_dir, ["index.html"], label="../../etc"))
    with pytest.raises(ParameterTypeError, match="concurrency"):
        scrape_images(params=params(site, data_dir, ["index.html"], concurrency=0))
    assert site.stats.hits == [] and not (data_dir / "raw").exists()


def test_a_proxy_the_guard_refuses_fails_the_run_before_any_request(site, data_dir):
    p = params(site, data_dir, ["index.html"], proxy=site.base)  # a loopback proxy
    del p["allow_private_networks"]
    with pytest.raises(ConfigError, match=r"proxy .* refused: .*127\.0\.0\.1 is a loopback"):
        scrape_images(params=p)
    with pytest.raises(ParameterTypeError, match="proxy"):
        scrape_images(params=params(site, data_dir, ["index.html"], proxy="socks5://h:1080"))
    assert site.stats.hits == [] and not (data_dir / "warehouse").exists()


def test_the_cli_runs_the_flow_and_prints_the_summary(site, data_dir):
    args = ["scrape", "--pages", site.url("gallery/page1.html"), "--label", "cli"]
    args += ["--allow-private-networks", "--follow-pages", "1", "--data-dir", str(data_dir)]
    result = CliRunner().invoke(cli.app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "[cli]: 2 page(s), 2 URL(s) -> ok 2" in result.output
    assert "manifest " in result.output


def test_a_run_waits_while_another_holds_the_host(site, data_dir, tmp_path):
    """The threads runner takes the same per-host limit as processes and Dask: while another
    run holds all of the host's slots, this one reads its page but fetches no image."""
    from tasks.scrape import politeness
    from tasks.scrape.hosts import host_key

    name = politeness.limit_name(host_key(site.base))
    waiting = threading.Event()
    release_stale = politeness.release_stale

    def refused(*args):  # called after each refusal: this run is waiting for the host
        waiting.set()
        return release_stale(*args)

    run = {"pages": ["index.html"], "run_id": "run-wait", "respect_robots": False}
    with politeness.HostLease([name], 4, tmp_path / "other-run"):
        done = {}

        def scrape() -> None:
            done["result"] = scrape_images(params=params(site, data_dir, **run))

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(politeness, "release_stale", refused)
            worker = threading.Thread(target=scrape)
            worker.start()
            assert waiting.wait(60)
        assert len(site.hits("index.html")) == 1 and site.hits("img/plain.jpg") == []
    worker.join(60)
    assert done["result"].counts["ok"] >= 1 and len(site.hits("img/plain.jpg")) == 1


@pytest.mark.parametrize("lease", [0, 0.5, 3601])
def test_a_host_lease_out_of_bounds_fails_before_any_work(lease):
    from pydantic import ValidationError

    from flows.params import ScrapeParams

    with pytest.raises(ValidationError, match="host_lease_s"):
        ScrapeParams(pages=["http://pictures.invalid/"], label="x", host_lease_s=lease)
