"""One identity per host, on the real loopback server and a real Prefect server: a page that
spells one host many ways gets one host's share (slots, robots.txt, Crawl-delay, one Prefect
limit), and URLs with user info are refused before anything is sent and stored without it."""

import itertools
import uuid
from datetime import date

import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client

from storage.errors import ConfigError
from tasks.scrape import politeness
from tasks.scrape.fetch import Fetcher, check_proxy
from tasks.scrape.hosts import host_key
from tasks.scrape.politeness import (
    HOST_LIMIT_PREFIX,
    HostLease,
    create_host_limits,
    limit_name,
    prune_idle_limits,
)
from tasks.scrape.settings import ScrapeSettings
from tasks.scrape.tasks import download_images, download_shard, find_image_urls
from tests.http_server import SiteServer, picture

IMAGES = 16


def spellings(port: int) -> list[str]:
    """Sixteen ways to write http://127.0.0.1:<port>: numeric forms the resolver reads as
    127.0.0.1, a port with a leading zero, the scheme in capitals."""
    hosts = ["127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0177.0.0.1"]
    ports = [f"{port}", f"0{port}"]
    schemes = ["http", "HTTP"]
    bases = [f"{s}://{h}:{p}" for h, p, s in itertools.product(hosts, ports, schemes)]
    return bases[:IMAGES]


def gallery(links: list[str]) -> dict[str, bytes]:
    files = {f"img/{i}.jpg": picture(2000 + i) for i in range(IMAGES)}
    tags = "".join(f'<img src="{link}">' for link in links)
    files["page.html"] = f"<html><body>{tags}</body></html>".encode()
    files["robots.txt"] = b"User-agent: *\nAllow: /\n"
    return files


def config(**overrides) -> ScrapeSettings:
    base = dict(concurrency=IMAGES, per_host=1, allow_private_networks=True, timeout=5.0)
    return ScrapeSettings(**{**base, **overrides})


def download_page(site: SiteServer, cfg: ScrapeSettings, tmp_path, links: list[str]) -> list[dict]:
    site.files.update(gallery(links))
    found = find_image_urls.fn([site.url("page.html")], "r", "t", cfg)
    assert len(found["candidates"]) == len(links)
    site.reset_stats()  # what follows counts the downloads alone (their batch reads robots.txt)
    return download_images.fn(found["candidates"], "r", "t", str(tmp_path), cfg)


def test_spellings_of_one_host_share_its_slots_and_its_robots_txt(tmp_path):
    with SiteServer(root=None, latency=0.05) as site:
        links = [f"{base}/img/{i}.jpg" for i, base in enumerate(spellings(site.port))]
        rows = download_page(site, config(), tmp_path, links)
        shown = [(r["url"], r["status"], r["error"]) for r in rows if r["status"] != "ok"]
        assert [r["status"] for r in rows] == ["ok"] * IMAGES, shown
        # Sixteen workers, sixteen spellings, one host: one request at a time, per_host=1.
        assert site.stats.max_in_flight == 1
        assert len(site.hits("robots.txt")) == 1, site.hits("robots.txt")


def test_crawl_delay_holds_across_spellings(tmp_path):
    with SiteServer(root=None) as site:
        links = [f"{base}/img/{i}.jpg" for i, base in enumerate(spellings(site.port)[:3])]
        site.files.update(gallery(links))
        site.files["robots.txt"] = b"User-agent: *\nCrawl-delay: 0.3\n"
        with Fetcher(config(per_host=4)) as fetcher:
            assert all(fetcher.get(link).ok for link in links)
        starts = [site.hits(f"img/{i}.jpg")[0].at for i in range(3)]
    # Lower bounds only: each request started at least the delay after the one before.
    assert all(b - a >= 0.28 for a, b in itertools.pairwise(sorted(starts))), starts


def test_user_info_is_refused_before_any_request_and_never_stored(tmp_path):
    with SiteServer(root=None) as site:
        host = f"127.0.0.1:{site.port}"
        links = [f"http://u{i}:secret{i}@{host}/img/{i}.jpg" for i in range(IMAGES)]
        rows = download_page(site, config(), tmp_path, links)
        assert {r["status"] for r in rows} == {"blocked"}
        assert "user info" in rows[0]["error"]
        assert [r["url"] for r in rows] == [site.url(f"img/{i}.jpg") for i in range(IMAGES)]
        assert all(site.hits(f"img/{i}.jpg") == [] for i in range(IMAGES))
        site.reset_stats()
        page = f"http://me:secret@{host}/page.html"
        found = find_image_urls.fn([page], "r", "t", config())
        (failed,) = found["rows"]
        assert failed["status"] == "blocked" and failed["page_url"] == site.url("page.html")
        assert site.stats.hits == []  # not the page, not robots.txt: nothing was sent
    assert "secret" not in repr(rows + found["rows"])


def test_a_redirect_to_a_url_with_user_info_is_refused_and_not_stored():
    with SiteServer(root=None, files={"a.jpg": picture(1)}) as site:
        site.redirects["hop"] = f"http://me:secret@127.0.0.1:{site.port}/a.jpg"
        with Fetcher(config()) as fetcher:
            got = fetcher.get(site.url("hop"))
        assert got.status == "blocked" and site.hits("a.jpg") == []
    assert "secret" not in got.final_url and got.final_url == site.url("a.jpg")


def host_limits() -> set[str]:
    with get_client(sync_client=True) as client:
        limits = client.read_global_concurrency_limits(limit=200)
    return {limit.name for limit in limits if limit.name.startswith(HOST_LIMIT_PREFIX)}


def test_a_scrape_creates_one_prefect_limit_per_host(prefect_harness, tmp_path):
    """Thirty-two spellings of one host, half with user info (u1@, u2@ ...): one limit."""
    with SiteServer(root=None) as site:
        links = [f"{base}/img/{i}.jpg" for i, base in enumerate(spellings(site.port))]
        site.files.update(gallery(links))
        links += [f"http://u{i}@127.0.0.1:{site.port}/img/{i}.jpg" for i in range(IMAGES)]
        candidates = [{"url": u, "page_url": site.url("page.html")} for u in links]
        before = host_limits()
        create_host_limits(links, 1)
        shard = download_shard.fn(
            candidates, "r", "t", str(tmp_path / "raw"), config(), 32,
            part="t-0001", run_date=date(2026, 1, 1), data_dir=str(tmp_path / "data"),
        )  # fmt: skip
    assert shard.counts == {"ok": IMAGES, "blocked": IMAGES}  # user info: refused, unsent
    assert pq.read_table(shard.path).num_rows == 2 * IMAGES
    assert host_limits() - before == {limit_name(host_key(site.base))}


def test_idle_host_limits_are_pruned_and_busy_or_current_ones_kept(prefect_harness, tmp_path):
    tag = uuid.uuid4().hex[:8]
    idle, busy, mine = (f"http://{kind}-{tag}.invalid/" for kind in ("idle", "busy", "mine"))
    create_host_limits([idle, busy], 2)
    names = {url: limit_name(host_key(url)) for url in (idle, busy, mine)}
    with HostLease([names[busy]], 2, tmp_path), get_client(sync_client=True) as client:
        assert names[idle] in host_limits()
        create_host_limits([mine], 2, idle_s=0)  # every idle limit is stale here
        kept = host_limits()
        assert names[idle] not in kept and {names[busy], names[mine]} <= kept
        assert prune_idle_limits(client, idle_s=3600) == []  # all recently used: none stale


def test_a_limit_pruned_under_a_shard_is_created_again(prefect_harness, tmp_path, monkeypatch):
    name = limit_name(host_key(f"http://gone-{uuid.uuid4().hex[:8]}.invalid/"))
    ensured = []

    def ensure_then_pruned(client, limit_name, limit):  # the real one, then another scrape
        politeness_ensure(client, limit_name, limit)  # prunes it before we take our slots
        if not ensured:
            client.delete_global_concurrency_limit_by_name(limit_name)
        ensured.append(limit_name)

    politeness_ensure = politeness.ensure_limit
    monkeypatch.setattr(politeness, "ensure_limit", ensure_then_pruned)
    with HostLease([name], 2, tmp_path), get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 2
    assert ensured == [name, name]  # created, pruned, created again


@pytest.mark.parametrize("held", [1, 2])
def test_a_lease_holds_exactly_the_slots_it_asked_for(prefect_harness, tmp_path, held):
    name = limit_name(host_key(f"http://slots-{uuid.uuid4().hex[:8]}.invalid/"))
    with HostLease([name], held, tmp_path), get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(name)
        assert (limit.limit, limit.active_slots) == (held, held)
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 0


def test_a_proxy_password_stays_out_of_the_error():
    cfg = config(allow_private_networks=False, proxy="http://me:secret@127.0.0.1:9")
    with pytest.raises(ConfigError, match="loopback") as caught:
        check_proxy(cfg)
    assert "secret" not in str(caught.value) and "127.0.0.1:9" in str(caught.value)
