"""The scraper's retry policy and one requests session (guarded, proxies opt-in)."""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime
from urllib.parse import urlsplit
from urllib.request import getproxies

import requests

from tasks.scrape.netguard import AddressPolicy, GuardedAdapter, address_refusal
from tasks.scrape.settings import ScrapeSettings


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
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"proxy {proxy!r}: give an http:// or https:// URL with a host"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if reason := address_refusal(parts.hostname, port, policy, must_resolve=True):
            return f"proxy {proxy!r} refused: {reason}"
    return None


# --- retries -----------------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_delay(
    attempt: int, retry_after: float | None, config: ScrapeSettings, rng: random.Random
) -> float | None:
    """Seconds to wait before retry number `attempt + 1`, or None to give up.

    Exponential backoff with equal jitter (half fixed, half random, so many workers hitting
    the same failure do not retry in lockstep); a server's Retry-After is a floor, and one
    longer than `max_retry_after` means giving up rather than tying a worker up for hours.
    """
    ceiling = min(config.backoff_max, config.backoff * 2**attempt)
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after is not None:
        if retry_after > config.max_retry_after:
            return None
        delay = max(delay, retry_after)
    return delay
