"""The scraper's HTTP client against a real server on 127.0.0.1: retries, Retry-After,
timeouts, redirects, max_bytes, robots.txt, the User-Agent and private-address blocking."""

import ipaddress
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from urllib3 import HTTPResponse
from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError

from tasks.scrape.fetch import (
    Fetcher,
    ScrapeSettings,
    _is_timeout,
    make_session,
)
from tasks.scrape.fetch import _blocked_in as blocked_in
from tasks.scrape.netguard import private_address_refusal
from tasks.scrape.session import next_retry, retry_policy
from tests.http_server import SiteServer

UA = "pixelpipe-tests/1.0 (+https://example.invalid/bot)"


def config(**overrides) -> ScrapeSettings:
    base = dict(user_agent=UA, timeout=2.0, backoff=0.01, allow_private_networks=True)
    return ScrapeSettings(**{**base, **overrides})


@pytest.fixture
def site():
    with SiteServer(slow_s=3.0) as server:
        yield server


# --- pure: delays and addresses ----------------------------------------------------------------


def answer(status: int, retry_after: str | None = None) -> HTTPResponse:
    """A urllib3 response as the server sent it (what next_retry reads)."""
    return HTTPResponse(status=status, headers={"Retry-After": retry_after} if retry_after else {})


def waits(cfg: ScrapeSettings, response: HTTPResponse | None = None) -> list[float]:
    """The waits before each retry until next_retry gives up."""
    retry, found = retry_policy(cfg), []
    while (following := next_retry(retry, cfg, response)) is not None:
        retry, wait = following
        found.append(wait)
    return found


def test_retries_back_off_exponentially_with_jitter_and_a_cap():
    cfg = ScrapeSettings(retries=5, backoff=1.0, backoff_max=5.0)
    runs = [waits(cfg, answer(503)) for _ in range(20)]
    assert {len(run) for run in runs} == {5}  # then it gives up
    for run in runs:
        first, *rest = run
        assert first == 0.0  # urllib3: the first retry goes at once
        for n, wait in enumerate(rest, start=1):
            assert 2.0**n <= wait <= min(2.0**n + 1.0, 5.0) or wait == 5.0
    assert len({run[1] for run in runs}) > 1  # jittered, not lockstep
    assert waits(ScrapeSettings(retries=0)) == []


def test_retry_after_is_a_floor_and_too_long_a_wait_gives_up():
    cfg = ScrapeSettings(retries=2, backoff=0.01, max_retry_after=30)
    assert waits(cfg, answer(429, "1")) == [1.0, 1.0]
    assert waits(cfg, answer(503, "30")) == [30.0, 30.0]
    assert waits(cfg, answer(503, "31")) == []
    # A Retry-After shorter than the backoff does not shorten it.
    assert waits(ScrapeSettings(retries=3, backoff=1.0), answer(503, "0"))[2] >= 4.0


def test_retry_after_as_an_http_date_and_unreadable_ones_ignored():
    cfg = ScrapeSettings(retries=1, backoff=0.0)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    (wait,) = waits(cfg, answer(503, later))
    assert 50 <= wait <= 60
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=60), usegmt=True)
    assert waits(cfg, answer(503, earlier)) == [0.0]
    assert waits(cfg, answer(503, "soon")) == [0.0]


@pytest.mark.parametrize(
    "ip",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
     "100.64.0.1", "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1"],
)  # fmt: skip
def test_private_and_special_addresses_are_refused(ip):
    assert private_address_refusal(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(ip):
    assert private_address_refusal(ipaddress.ip_address(ip)) is None


# --- against the server -------------------------------------------------------------------------


def test_a_500_is_retried_until_it_succeeds(site):
    with Fetcher(config()) as fetcher:
        got = fetcher.get(site.url("flaky/img/flaky.jpg"))
    assert got.ok and got.content == site.files["img/flaky.jpg"]
    assert (got.http_status, got.attempts) == (200, 2)
    assert len(site.hits("flaky/img/flaky.jpg")) == 2


def test_a_429_is_retried_after_the_retry_after_seconds(site):
    with Fetcher(config()) as fetcher:
        got = fetcher.get(site.url("ratelimited/img/ratelimited.jpg"))
    assert got.ok and got.attempts == 2
    first, second = site.hits("ratelimited/img/ratelimited.jpg")
    # Only a lower bound: the client slept Retry-After (1 s) between the two requests.
    assert second.at - first.at >= 0.95


def test_retries_end_with_the_last_http_status(site):
    with Fetcher(config(retries=2)) as fetcher:
        got = fetcher.get(site.url("status/503"))
    assert (got.status, got.http_status, got.attempts) == ("http_error", 503, 3)
    with Fetcher(config()) as fetcher:
        got = fetcher.get(site.url("img/missing.jpg"))
    assert (got.status, got.http_status, got.attempts) == ("http_error", 404, 1)  # not retried


def test_a_slow_response_times_out_without_retrying(site):
    start = time.monotonic()
    with Fetcher(config(timeout=0.3)) as fetcher:
        got = fetcher.get(site.url("slow/img/slow.jpg"))
    assert got.status == "timeout" and got.attempts == 1
    assert time.monotonic() - start < 2.0


def test_a_body_that_trickles_in_hits_the_deadline(site):
    cfg = config(timeout=0.25)  # each 100-byte piece comes within it; the whole body does not
    start = time.monotonic()
    with Fetcher(cfg) as fetcher:
        got = fetcher.get(site.url("drip/img/plain.jpg"))
    assert got.status == "timeout" and "within 1.0 s" in got.error
    assert time.monotonic() - start < 2.5


@pytest.mark.parametrize(
    ("error", "is_timeout"),
    [
        (requests.ConnectTimeout("connect timed out"), True),
        (requests.ConnectionError(ReadTimeoutError(None, "u", "read timed out")), True),
        (requests.ConnectionError(MaxRetryError(None, "u", NewConnectionError(None, "no"))), False),
        (requests.ConnectionError("Connection reset by peer"), False),
    ],
)
def test_timeouts_are_told_apart_from_refused_connections(error, is_timeout):
    assert _is_timeout(error) is is_timeout


def test_a_refused_connection_is_retried_then_reported(site):
    port = site.port
    site.__exit__(None, None, None)  # nothing listens on that port any more
    with Fetcher(config(retries=2, respect_robots=False)) as fetcher:
        got = fetcher.get(f"http://127.0.0.1:{port}/img/plain.jpg")
    assert got.status == "http_error" and got.attempts == 3 and "ConnectionError" in got.error
    with Fetcher(config(retries=0)) as fetcher:  # RFC 9309: robots.txt unreachable, stay out
        got = fetcher.get(f"http://127.0.0.1:{port}/img/plain.jpg")
    assert got.status == "robots_disallowed" and "could not be read" in got.error


def test_redirect_chains_are_followed_hop_by_hop(site):
    with Fetcher(config()) as fetcher:
        got = fetcher.get(site.url("redirect/3/img/redirected.jpg"))
        loop = fetcher.get(site.url("redirect/20/img/redirected.jpg"))
        to_js = fetcher.get(site.url("goto?url=javascript:alert(1)"))
    assert got.ok and got.final_url == site.url("img/redirected.jpg") and got.attempts == 4
    assert loop.status == "http_error" and "redirects" in loop.error
    assert to_js.status == "unsupported_scheme"


def test_max_bytes_is_enforced_from_the_header_and_while_streaming(site):
    size = len(site.files["img/big.jpg"])
    with Fetcher(config(max_bytes=size - 1)) as fetcher:
        declared = fetcher.get(site.url("img/big.jpg"))
        streamed = fetcher.get(site.url("stream/img/big.jpg"))
    assert declared.status == "too_large" and "Content-Length" in declared.error
    assert streamed.status == "too_large" and "more than max_bytes" in streamed.error
    with Fetcher(config(max_bytes=size)) as fetcher:
        assert fetcher.get(site.url("stream/img/big.jpg")).content == site.files["img/big.jpg"]


def test_robots_txt_is_read_once_and_obeyed(site):
    with Fetcher(config()) as fetcher:
        refused = fetcher.get(site.url("private/secret.jpg"))
        allowed = [fetcher.get(site.url("img/plain.jpg")) for _ in range(3)]
    assert refused.status == "robots_disallowed" and refused.attempts == 0
    assert all(a.ok for a in allowed)
    assert site.hits("private/secret.jpg") == [] and len(site.hits("robots.txt")) == 1
    with Fetcher(config(respect_robots=False)) as fetcher:
        assert fetcher.get(site.url("private/secret.jpg")).ok


@pytest.mark.parametrize(("code", "allowed"), [(404, True), (403, True), (503, False)])
def test_robots_txt_errors_follow_rfc_9309(code, allowed):
    with SiteServer(statuses={"robots.txt": code}) as site, Fetcher(config(retries=0)) as fetcher:
        got = fetcher.get(site.url("img/plain.jpg"))
    assert got.ok is allowed
    assert got.status == (None if allowed else "robots_disallowed")


def test_the_user_agent_names_pixelpipe_and_one_connection_is_reused(site):
    with Fetcher(ScrapeSettings(allow_private_networks=True)) as fetcher:
        for _ in range(5):
            assert fetcher.get(site.url("img/plain.jpg")).ok
    assert {h.headers["User-Agent"] for h in site.stats.hits} == {ScrapeSettings().user_agent}
    assert site.stats.connections == 1  # robots.txt and five images over one pooled connection
    with Fetcher(config(retries=1)) as fetcher:  # error pages, retries and redirects too
        fetcher.get(site.url("img/missing.jpg"))
        fetcher.get(site.url("status/503"))
        fetcher.get(site.url("redirect/2/img/plain.jpg"))
    assert site.stats.connections == 2
    with Fetcher(config()) as fetcher:
        fetcher.get(site.url("img/plain.jpg"))
    assert site.stats.hits[-1].headers["User-Agent"] == UA


# --- private networks ------------------------------------------------------------------------


def test_loopback_is_blocked_unless_allowed(site):
    with Fetcher(config(allow_private_networks=False)) as fetcher:
        by_ip = fetcher.get(site.url("img/plain.jpg"))
        by_name = fetcher.get(f"http://localhost:{site.port}/img/plain.jpg")
        as_decimal = fetcher.get(f"http://2130706433:{site.port}/img/plain.jpg")
        metadata = fetcher.get("http://169.254.169.254/latest/meta-data/")
    for got in (by_ip, by_name, as_decimal, metadata):
        assert got.status == "blocked" and got.attempts == 0, got
    # The host once, with the setting: not "127.0.0.1: 127.0.0.1 is a loopback address".
    said = "127.0.0.1 is a loopback address (allow_private_networks is off)"
    assert by_ip.error == as_decimal.error == said
    assert by_name.error.startswith("localhost: ") and "loopback" in by_name.error
    assert metadata.error.startswith("169.254.169.254 is a link-local address")
    assert site.stats.hits == []  # nothing was even asked of the server
    with Fetcher(config(allow_private_networks=True)) as fetcher:
        assert fetcher.get(site.url("img/plain.jpg")).ok


def test_a_redirect_to_a_blocked_address_is_blocked(site):
    # Treat 127.0.0.1 as public and 127.0.0.2 as private: the redirect is the only way in.
    def policy(ip):
        return "a test-private address" if str(ip) == "127.0.0.2" else None

    target = f"http://127.0.0.2:{site.port}/img/plain.jpg"
    with Fetcher(config(allow_private_networks=False), policy=policy) as fetcher:
        got = fetcher.get(site.url(f"goto?url={target}"))
    assert got.status == "blocked" and got.final_url == target
    assert got.http_status == 302 and "test-private" in got.error


def test_every_socket_is_checked_even_when_dns_changes_its_answer(site):
    # The session alone (no up-front DNS check): the guarded connection refuses the peer.
    session = make_session(config(), lambda ip: "loopback" if ip.is_loopback else None)
    with pytest.raises(requests.ConnectionError) as caught:
        session.get(site.url("img/plain.jpg"), timeout=2)
    assert blocked_in(caught.value) is not None
    assert site.stats.hits == []
