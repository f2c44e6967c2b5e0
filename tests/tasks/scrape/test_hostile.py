"""Hostile servers and settings against the real loopback server: trickled headers and bodies
meet the deadline, environment proxies cannot carry a request past the address guard, and a
small file that decodes huge is refused from its header."""

import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from pydantic import ValidationError

from storage.errors import ConfigError
from tasks.scrape.fetch import Fetcher, ScrapeSettings, check_proxy, make_session
from tasks.scrape.fetch import _blocked_in as blocked_in
from tasks.scrape.images import check_image
from tasks.scrape.netguard import private_address_refusal
from tasks.scrape.tasks import download_images
from tests.http_server import SiteServer, bilevel_png, picture
from tests.image_attacks import hostile_jpeg, lying_ico, lying_webp, pillow_decodes

ROOT = Path(__file__).resolve().parents[3]


def config(**overrides) -> ScrapeSettings:
    base = dict(user_agent="pixelpipe-tests/1.0", timeout=0.5, backoff=0.01, retries=0)
    return ScrapeSettings(**{**base, "allow_private_networks": True, **overrides})


# --- a total deadline per request ------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "path"),
    [("headers", "img/big.jpg"), ("body", "img/big.jpg"), ("unsized", "img/og.png")],
)
def test_a_trickling_response_ends_at_the_deadline_and_frees_the_host_slot(part, path):
    # One byte every 50 ms: no read ever waits the 0.5 s timeout, and the whole response
    # would take 11 s (og.png) to 20 minutes (big.jpg); the deadline ends it mid-chunk.
    # "unsized" (Connection: close, no length) is the case where http.client lets go of the
    # socket: the watchdog must still find it.
    with SiteServer(trickle={path: part}, trickle_s=0.05) as site:
        body = site.files[path]
        with Fetcher(config(deadline=1.0, per_host=1)) as fetcher:
            got = fetcher.get(site.url(path))
            # per_host=1: this only runs if the timed-out request gave its slot back.
            with ThreadPoolExecutor(1) as pool:
                after = pool.submit(fetcher.get, site.url("img/plain.jpg")).result(timeout=10)
        sent = site.trickled(path)
    assert got.status == "timeout" and "within 1.0 s" in got.error, got
    assert got.attempts == 1 and got.content is None
    assert got.elapsed_s < 4.0  # 1 s deadline; the server alone would take far longer
    assert sent < (400 if part == "headers" else len(body))  # the client hung up early
    assert after.ok and after.content == site.files["img/plain.jpg"]


def test_a_trickling_robots_txt_times_out_and_keeps_the_site_off_limits():
    with SiteServer(trickle={"robots.txt": "headers"}) as site, Fetcher(config(deadline=0.6)) as f:
        got = f.get(site.url("img/plain.jpg"))
    assert got.status == "robots_disallowed" and "within 0.6 s" in got.error, got
    assert got.elapsed_s < 4.0
    assert site.hits("img/plain.jpg") == []


def test_a_trickled_download_is_a_timeout_row_and_nothing_is_stored(tmp_path):
    with SiteServer(trickle={"img/big.jpg": "body"}) as site:
        candidates = [
            {"url": site.url(p), "page_url": "p", "found_in": "img[src]"}
            for p in ("img/big.jpg", "img/plain.jpg")
        ]
        cfg = config(deadline=0.8, max_bytes=100_000)
        rows = download_images.fn(candidates, "r", "t", str(tmp_path / "raw"), cfg)
    assert [r["status"] for r in rows] == ["timeout", "ok"]
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [Path(rows[1]["path"]).name]


def test_redirects_share_one_deadline_per_url():
    # Each hop answers in 0.3 s, well within the 1 s deadline; six of them do not.
    with SiteServer(latency=0.3) as site:
        cfg = config(deadline=1.0, respect_robots=False)
        with Fetcher(cfg) as fetcher:
            chained = fetcher.get(site.url("redirect/5/img/plain.jpg"))
            short = fetcher.get(site.url("redirect/1/img/plain.jpg"))
    assert chained.status == "timeout" and "within 1.0 s" in chained.error, chained
    assert len(site.stats.hits) < 6 + 2  # the chain was not followed to its end
    assert short.ok


def test_the_deadline_defaults_to_four_timeouts_and_can_be_set():
    assert ScrapeSettings(timeout=2).deadline_s == 8.0
    assert ScrapeSettings(timeout=2, deadline=30).deadline_s == 30.0


# --- proxies and the address guard -------------------------------------------------------------


@pytest.fixture
def proxy(monkeypatch):
    """A loopback "proxy" that counts requests (it answers from its own files), set as the
    environment's HTTP(S)_PROXY, with nothing exempted by NO_PROXY."""
    with SiteServer(root=None, files={"img/plain.jpg": picture(1)}) as server:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, server.base)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        yield server


def test_environment_proxies_are_not_used_by_default(proxy):
    with SiteServer() as site:
        with Fetcher(config(allow_private_networks=False, respect_robots=False)) as fetcher:
            unresolvable = fetcher.get("http://internal.invalid/img/plain.jpg")
            loopback = fetcher.get(site.url("img/plain.jpg"))
        with Fetcher(config(allow_private_networks=True)) as fetcher:
            direct = fetcher.get(site.url("img/plain.jpg"))
    assert unresolvable.status == "http_error" and loopback.status == "blocked"
    assert direct.ok and len(site.hits("img/plain.jpg")) == 1  # straight to the site
    assert proxy.stats.hits == []


def test_a_proxy_on_a_refused_address_fails_before_any_request(proxy):
    for cfg in (
        config(allow_private_networks=False, proxy=proxy.base),
        config(allow_private_networks=False, trust_env=True),  # the environment's proxy
    ):
        with pytest.raises(ConfigError, match="loopback"):
            check_proxy(cfg)
        with pytest.raises(ConfigError, match="proxy"):
            Fetcher(cfg)
    with pytest.raises(ValidationError, match="http"):  # the settings refuse it on arrival
        config(proxy="socks5://127.0.0.1:1080")
    assert proxy.stats.hits == []


def test_through_an_allowed_proxy_the_target_is_checked_before_sending(proxy):
    # 127.0.0.1 plays a public address, 127.0.0.2 a private one.
    def policy(ip):
        return "a test-private address" if str(ip) != "127.0.0.1" else None

    cfg = config(allow_private_networks=False, respect_robots=False, proxy=proxy.base)
    with Fetcher(cfg, policy=policy) as fetcher:
        private = fetcher.get(f"http://127.0.0.2:{proxy.port}/img/plain.jpg")
        unknown = fetcher.get("http://internal.invalid/img/plain.jpg")
        public = fetcher.get(f"http://127.0.0.1:{proxy.port + 1}/img/plain.jpg")
    assert private.status == "blocked" and "test-private" in private.error
    assert unknown.status == "blocked" and "cannot be checked" in unknown.error
    assert public.ok and public.content == proxy.files["img/plain.jpg"]
    assert [h.path for h in proxy.stats.hits] == [
        f"http://127.0.0.1:{proxy.port + 1}/img/plain.jpg"
    ]


def test_connections_to_a_proxy_go_through_the_guard_too(proxy):
    # The session alone, no up-front check: the socket to the proxy is refused.
    session = make_session(config(proxy=proxy.base), private_address_refusal)
    with pytest.raises(requests.ConnectionError) as caught:
        session.get("http://internal.invalid/img/plain.jpg", timeout=2)
    assert blocked_in(caught.value) is not None
    assert proxy.stats.hits == []


@pytest.mark.parametrize(
    "ip",
    ["2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:0a00:0001::", "64:ff9b::7f00:1",
     "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
     "::ffff:10.0.0.1", "::7f00:1"],
)  # fmt: skip
def test_ipv6_forms_of_private_ipv4_addresses_are_refused(ip):
    assert private_address_refusal(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", ["2002:808:808::", "64:ff9b::808:808"])
def test_ipv6_forms_of_public_ipv4_addresses_are_allowed(ip):
    assert private_address_refusal(ipaddress.ip_address(ip)) is None


# --- the pixel budget ----------------------------------------------------------------------------

RSS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from collections import Counter
    from tasks.scrape.fetch import ScrapeSettings
    from tasks.scrape.tasks import download_images
    from tests.http_server import SiteServer, bilevel_png

    png = bilevel_png(9400, 9400)  # 88 MP, under Pillow's own 89 MP bomb limit
    files = {f"huge/{i}.png": png for i in range(16)}
    with SiteServer(root=None, files=files) as site:
        candidates = [{"url": site.url(p), "page_url": "p", "found_in": "img[src]"} for p in files]
        cfg = ScrapeSettings(concurrency=16, per_host=16, allow_private_networks=True)
        rows = download_images.fn(candidates, "r", "t", sys.argv[1], cfg)
    # VmHWM: this process's own peak. ru_maxrss would carry over the parent's (pytest's, with
    # TensorFlow loaded by earlier tests) through fork and exec.
    status = open("/proc/self/status").read()
    rss_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps({"bytes": len(png), "rss_mb": rss_mb,
                      "statuses": Counter(r["status"] for r in rows),
                      "error": rows[0]["error"]}))
    """
)


def test_sixteen_small_files_that_decode_huge_stay_under_one_gigabyte(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(tmp_path / "raw")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["bytes"] < 400_000  # a small file ...
    assert out["statuses"] == {"too_large": 16}  # ... refused from its header
    assert "9400x9400" in out["error"] and "max_pixels" in out["error"]
    assert out["rss_mb"] < 1024, out
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_the_pixel_budget_is_judged_from_the_header():
    check = check_image(bilevel_png(9400, 9400), 32, max_pixels=50_000_000)
    assert (check.status, check.width, check.height) == ("too_large", 9400, 9400)
    assert check_image(picture(1, (100, 100), "PNG"), 32, max_pixels=9_999).status == "too_large"
    assert check_image(picture(1, (100, 100), "PNG"), 32, max_pixels=10_000).status == "ok"


# --- the decode budgets (storage/images.py) ----------------------------------------------------


def test_costly_images_are_rows_and_never_decoded():
    with pillow_decodes() as loads:
        scans = check_image(hostile_jpeg(repeats=800), 32)
        icon = check_image(lying_ico(12000), 16)
        canvas = check_image(lying_webp((13000, 13000)), 32)
    assert loads == []
    assert (scans.status, scans.format) == ("too_large", "JPEG")
    assert "more than 100 scans" in scans.error
    assert icon.status == "not_image" and "accepted format" in icon.error  # ICO is not kept
    assert canvas.status == "too_large" and "13000x13000" in canvas.error
