"""The scraper's batch tasks (via .fn()) on the real test site: every URL's status, and
exactly which files end up stored."""

import hashlib
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import tasks.scrape.extract as extract_module
from storage.rows import to_arrow
from tasks.scrape.hosts import host_key
from tasks.scrape.politeness import HostLease, limit_name
from tasks.scrape.settings import ScrapeSettings
from tasks.scrape.tasks import download_images, find_image_urls
from tests.http_server import DATA_PNG, SiteServer, picture

# Page -> [(path on the site, status)] in page order. "data:" is the inline PNG.
EXPECTED = {
    "index.html": [
        ("img/og.png", "ok"),
        ("img/plain.jpg", "ok"),
        ("img/large.webp", "ok"),  # largest srcset candidate; small.jpg is never fetched
        ("img/lazy.png", "ok"),  # data-src over the placeholder src
        ("img/pic-2x.bmp", "ok"),  # the <picture>'s 2x source
        ("img/full.gif", "ok"),  # the <a href> behind a thumbnail
        ("img/thumb.jpg", "too_small"),
        ("img/plain-copy.jpg", "duplicate"),
        ("data:", "ok"),
        ("javascript:alert(1)", "unsupported_scheme"),
        ("ftp://example.com/pic.jpg", "unsupported_scheme"),
    ],
    "bad.html": [
        ("img/missing.jpg", "http_error"),
        ("flaky/img/flaky.jpg", "ok"),
        ("ratelimited/img/ratelimited.jpg", "ok"),
        ("status/503", "http_error"),
        ("slow/img/slow.jpg", "timeout"),
        ("redirect/3/img/redirected.jpg", "ok"),
        ("img/error-page.jpg", "not_image"),
        ("img/truncated.jpg", "corrupt"),
        ("img/pixel.gif", "too_small"),
        ("img/huge.png", "too_large"),
        ("img/big.jpg", "too_large"),
        ("stream/img/big.jpg", "too_large"),
        ("private/secret.jpg", "robots_disallowed"),
    ],
    "gallery/page1.html": [("gallery/img/g1.jpg", "ok")],
    "gallery/page2.html": [("gallery/img/g2.jpg", "ok")],  # g1.jpg again: listed once
    "gallery/page3.html": [("gallery/img/g3.jpg", "ok")],  # its next link leaves the site
}
STORED_FROM = {  # the bytes behind each ok row
    "img/og.png": "img/og.png",
    "img/plain.jpg": "img/plain.jpg",
    "img/large.webp": "img/large.webp",
    "img/lazy.png": "img/lazy.png",
    "img/pic-2x.bmp": "img/pic-2x.bmp",
    "img/full.gif": "img/full.gif",
    "flaky/img/flaky.jpg": "img/flaky.jpg",
    "ratelimited/img/ratelimited.jpg": "img/ratelimited.jpg",
    "redirect/3/img/redirected.jpg": "img/redirected.jpg",
    "gallery/img/g1.jpg": "gallery/img/g1.jpg",
    "gallery/img/g2.jpg": "gallery/img/g2.jpg",
    "gallery/img/g3.jpg": "gallery/img/g3.jpg",
}


def absolute(site: SiteServer, path: str) -> str:
    return path if ":" in path else site.url(path)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def site():
    with SiteServer(slow_s=3.0) as server:
        yield server


@pytest.fixture(scope="module")
def cfg():
    return ScrapeSettings(
        user_agent="pixelpipe-tests/1.0",
        timeout=0.5,
        backoff=0.01,
        max_bytes=20_000,
        concurrency=8,
        per_host=4,
        allow_private_networks=True,
    )


@pytest.fixture(scope="module")
def found(site, cfg):
    pages = [site.url(p) for p in ("index.html", "bad.html", "gallery/page1.html")]
    pages += [
        site.url("missing-page.html"),
        site.url("private/page.html"),
        site.url("img/plain.jpg"),
    ]
    return find_image_urls.fn(pages, "run-1", "things", cfg, follow_pages=5)


def test_pages_yield_candidates_in_page_order_each_once(site, found):
    expected = [
        (absolute(site, path), site.url(page))
        for page, items in EXPECTED.items()
        for path, _ in items
    ]
    got = [(c["url"], c["page_url"]) for c in found["candidates"]]
    got = [("data:" if u.startswith("data:") else u, p) for u, p in got]
    assert got == expected
    assert found["pages"] == 5  # index, bad, and the three gallery pages


def test_pages_that_cannot_be_read_are_rows(site, found):
    rows = {r["url"]: r for r in found["rows"]}
    assert set(rows) == {
        site.url("missing-page.html"),
        site.url("private/page.html"),
        site.url("img/plain.jpg"),
    }
    missing = rows[site.url("missing-page.html")]
    assert (missing["status"], missing["http_status"], missing["found_in"]) == (
        "page_error", 404, "page"
    )  # fmt: skip
    assert rows[site.url("private/page.html")]["status"] == "robots_disallowed"
    not_html = rows[site.url("img/plain.jpg")]
    assert not_html["status"] == "page_error" and "not an HTML page" in not_html["error"]
    to_arrow("scrape_manifest", found["rows"])  # valid against the table's schema


def test_max_images_stops_following_pages(site, cfg):
    out = find_image_urls.fn([site.url("gallery/page1.html")], "r", "t", cfg, 5, max_images=1)
    assert out["pages"] == 1 and [c["url"] for c in out["candidates"]] == [
        site.url("gallery/img/g1.jpg")
    ]


@pytest.fixture(scope="module")
def downloaded(site, cfg, found, tmp_path_factory):
    raw = tmp_path_factory.mktemp("data") / "raw" / "things"
    site.reset_stats()
    rows = download_images.fn(found["candidates"], "run-1", "things", str(raw), cfg, 32)
    return raw, rows


def test_every_url_gets_its_status(site, downloaded):
    _, rows = downloaded
    expected = {absolute(site, p): s for items in EXPECTED.values() for p, s in items}
    got = {("data:" if r["url"].startswith("data:") else r["url"]): r["status"] for r in rows}
    assert got == expected
    by_url = {r["url"]: r for r in rows}
    assert by_url[site.url("flaky/img/flaky.jpg")]["attempts"] == 2
    assert by_url[site.url("ratelimited/img/ratelimited.jpg")]["attempts"] == 2
    assert by_url[site.url("img/missing.jpg")]["http_status"] == 404
    redirected = by_url[site.url("redirect/3/img/redirected.jpg")]
    assert redirected["final_url"] == site.url("img/redirected.jpg")
    duplicate = by_url[site.url("img/plain-copy.jpg")]
    assert duplicate["error"] == f"same bytes as {site.url('img/plain.jpg')}"
    assert duplicate["path"] == by_url[site.url("img/plain.jpg")]["path"]
    to_arrow("scrape_manifest", rows)


def test_exactly_the_good_images_are_stored_by_content_hash(site, downloaded):
    raw, rows = downloaded
    expected = {f"{sha(site.files[f])}.{f.rsplit('.', 1)[1]}" for f in STORED_FROM.values()}
    expected.add(f"{sha(DATA_PNG)}.png")
    assert {p.name for p in raw.iterdir()} == expected  # no temporary files left either
    for r in rows:
        if r["status"] in ("ok", "duplicate"):
            assert r["path"] == (raw / f"{r['sha256']}.{r['path'].rsplit('.', 1)[1]}").as_posix()
            assert r["path"].startswith("/")  # absolute POSIX paths
            data = (raw / r["path"].rsplit("/", 1)[1]).read_bytes()
            assert sha(data) == r["sha256"] and len(data) == r["bytes"]
        else:
            assert r["path"] is None and r["sha256"] is None and r["error"]


def test_refused_downloads_are_not_requested(site, downloaded):
    assert site.hits("private/secret.jpg") == []  # robots.txt said no
    assert site.hits("img/small.jpg") == []  # not the largest srcset candidate
    assert len(site.hits("robots.txt")) == 1  # once per batch, however many workers


def test_per_host_limit_holds_and_concurrency_overlaps_requests(tmp_path):
    files = {f"p{i}.jpg": picture(1000 + i) for i in range(24)}
    candidates = [{"url": "", "page_url": "p", "found_in": "img[src]"} for _ in files]
    with SiteServer(root=None, files=files, latency=0.05) as site:
        for c, name in zip(candidates, files, strict=True):
            c["url"] = site.url(name)
        for per_host, lowest, highest in [(2, 2, 2), (8, 3, 8)]:
            site.reset_stats()
            cfg = ScrapeSettings(concurrency=8, per_host=per_host, allow_private_networks=True)
            rows = download_images.fn(candidates, "r", "t", str(tmp_path / str(per_host)), cfg)
            assert {r["status"] for r in rows} == {"ok"}
            assert lowest <= site.stats.max_in_flight <= highest, (per_host, site.stats)


def test_a_page_is_parsed_once_and_its_candidates_are_capped(monkeypatch, caplog, cfg):
    parses = []

    class Counting(extract_module.Collector):  # the real parser target, counted
        def __init__(self, *args, **kwargs):
            parses.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(extract_module, "Collector", Counting)
    page1 = b'<a rel="next" href="page2.html">next</a>' + b"".join(
        b'<img src="i%d.jpg">' % i for i in range(50)
    )
    files = {"page1.html": page1, "page2.html": b'<img src="last.jpg">'}
    with (
        caplog.at_level(logging.WARNING, logger="pixelpipe"),
        SiteServer(root=None, files=files) as site,
    ):
        out = find_image_urls.fn([site.url("page1.html")], "r", "t", cfg, 1, max_candidates=20)
    assert out["pages"] == 2 and len(parses) == 2  # one parse per page, not one per question
    urls = [c["url"] for c in out["candidates"]]
    assert urls == [site.url(f"i{i}.jpg") for i in range(20)] + [site.url("last.jpg")]
    assert "max_candidates=20 image URLs; kept the first, dropped 30 more" in caplog.text


# --- per-host leases: a holder that dies --------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from tasks.scrape import politeness

def refused(*args):  # called after each refusal: says the worker is mid-acquire
    print("waiting", flush=True)
    return release_stale(*args)

release_stale, politeness.release_stale = politeness.release_stale, refused
lease = politeness.HostLease([sys.argv[1]], 2, Path(sys.argv[2]), lease_s=float(sys.argv[3]))
with lease:
    print("held", flush=True)
    time.sleep(600)
"""


def start_holder(name: str, claims, lease_s: float, until: str) -> subprocess.Popen:
    """Another process taking the host's slots (as a worker would); returns once it has printed
    `until`: "waiting" (refused, still trying) or "held"."""
    from prefect.settings import get_current_settings

    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[3])
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, name, str(claims), str(lease_s)],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in child.stdout:  # bounded: the child prints both lines or exits
        if line.strip() == until:
            return child
    raise AssertionError(f"the holder exited ({child.wait()}) before printing {until!r}")


def test_a_worker_killed_holding_a_host_frees_it_within_one_lease(prefect_harness, tmp_path):
    name, lease_s = limit_name(host_key(f"http://held-{uuid.uuid4().hex[:8]}.invalid/")), 2.0
    child = start_holder(name, tmp_path, lease_s, until="held")
    child.kill()
    child.wait()
    with pytest.raises(TimeoutError):  # the dead worker's lease still holds the slots...
        HostLease([name], 2, tmp_path, lease_s, wait_s=0.2).__enter__()
    with HostLease([name], 2, tmp_path, lease_s, wait_s=lease_s + 1.0) as lease:  # ...not long
        assert lease.claim.is_file()
    assert list(tmp_path.glob("*.lease")) == []  # the dead one's claim and ours are gone


def test_a_worker_killed_while_it_acquires_leaves_the_host_usable(prefect_harness, tmp_path):
    name, lease_s = limit_name(host_key(f"http://acq-{uuid.uuid4().hex[:8]}.invalid/")), 2.0
    with HostLease([name], 2, tmp_path, lease_s):
        child = start_holder(name, tmp_path, lease_s, until="waiting")
        child.kill()
        child.wait()
    with HostLease([name], 2, tmp_path, lease_s, wait_s=lease_s + 1.0) as lease:
        assert lease.claim.is_file()


def test_a_live_holder_is_never_taken_for_dead(prefect_harness, tmp_path):
    """Renewals keep its claim fresh: a waiter times out rather than releasing it."""
    name, lease_s = limit_name(host_key(f"http://live-{uuid.uuid4().hex[:8]}.invalid/")), 1.0
    with HostLease([name], 2, tmp_path, lease_s) as holder:
        with pytest.raises(TimeoutError):
            HostLease([name], 1, tmp_path, lease_s, wait_s=3 * lease_s).__enter__()
        assert holder.claim.is_file()
