"""The scraper's retry policy and one requests session (guarded, proxies opt-in)."""

from __future__ import annotations

import contextlib
from urllib.request import getproxies

import requests
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry

from tasks.scrape.hosts import host_key, without_user_info
from tasks.scrape.netguard import AddressPolicy, GuardedAdapter, address_refusal
from tasks.scrape.settings import ScrapeSettings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def make_session(config: ScrapeSettings, policy: AddressPolicy | None) -> requests.Session:
    """One session for all workers: its pool holds a connection per worker for each host.

    The environment's proxies are not used unless asked for (`trust_env`): an HTTP_PROXY
    set for other programs would otherwise carry requests past the address guard.
    """
    session = requests.Session()
    session.headers["User-Agent"] = config.user_agent
    session.trust_env = config.trust_env
    if config.proxy:
        session.proxies = {"http": config.proxy, "https": config.proxy}
    pool = {"pool_connections": 32, "pool_maxsize": config.concurrency, "max_retries": 0}
    adapter = GuardedAdapter(policy, **pool)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def configured_proxies(config: ScrapeSettings) -> list[str]:
    """The proxies requests may go through: `proxy`, else the environment's with trust_env."""
    if config.proxy:
        return [config.proxy]
    if config.trust_env:
        found = getproxies()
        return sorted({found[k] for k in ("http", "https", "all") if found.get(k)})
    return []


def proxy_refusal(config: ScrapeSettings, policy: AddressPolicy | None) -> str | None:
    """Why a configured proxy may not be used (not http(s), or on a refused address), or None.
    A proxy is a host we connect to like any other: a private one is an SSRF way in."""
    for proxy in configured_proxies(config):
        shown = without_user_info(proxy)  # a proxy's password goes to the proxy, not to logs
        try:  # read as requests will read it (urllib3's parser)
            key = host_key(proxy if "://" in proxy else f"http://{proxy}")
        except ValueError:
            return f"proxy {shown!r}: give an http:// or https:// URL with a host"
        if reason := address_refusal(key.host, key.port, policy, must_resolve=True):
            return f"proxy {shown!r} refused: {reason}"
    return None


# --- retries: urllib3's Retry, used a step at a time (the fetch waits outside its host slot) ---


def retry_policy(config: ScrapeSettings) -> Retry:
    """One URL hop's retries: `retries` more tries after a connection error, a 429 or a 5xx
    (and a 413 or 503 that says Retry-After), waiting urllib3's exponential backoff (the first
    retry at once, then 2x, 4x ... `backoff`, plus up to `backoff` of jitter so workers do not
    retry in lockstep, at most `backoff_max`), and never less than the server's Retry-After."""
    return Retry(
        total=config.retries,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=config.backoff,
        backoff_jitter=config.backoff,
        backoff_max=config.backoff_max,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def next_retry(
    retry: Retry, config: ScrapeSettings, response: BaseHTTPResponse | None = None
) -> tuple[Retry, float] | None:
    """The retry state after one more failure (`response`: the answer that failed, None for a
    connection error) and the seconds to wait, or None to give up: no retries left, or a
    Retry-After longer than `max_retry_after` (a worker waiting hours for one URL helps no one).
    A Retry-After urllib3 cannot read is ignored; it never shortens the backoff."""
    try:
        retry = retry.increment("GET", None, response=response)
    except MaxRetryError:
        return None
    wait = None
    if response is not None:
        with contextlib.suppress(InvalidHeader):
            wait = retry.get_retry_after(response)
    if wait is not None and wait > config.max_retry_after:
        return None
    return retry, max(retry.get_backoff_time(), wait or 0.0)
