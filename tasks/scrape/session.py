"""The scraper's HTTP settings, retry policy and one requests session (guarded, proxies opt-in)."""

from __future__ import annotations

import contextlib
from urllib.request import getproxies

import requests
from pydantic import BaseModel, ConfigDict, Field
from urllib3.exceptions import InvalidHeader, MaxRetryError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry

from storage.files import MAX_PIXELS
from tasks.scrape.hosts import host_key, without_user_info
from tasks.scrape.netguard import AddressPolicy, GuardedAdapter, address_refusal

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class FetchConfig(BaseModel):
    """Everything the HTTP client needs; plain values so a task can take it as an argument."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_agent: str = "pixelpipe"
    timeout: float = Field(15.0, gt=0, description="Connect and read timeout, seconds")
    retries: int = Field(3, ge=0)
    backoff: float = Field(
        0.5, ge=0, description="Backoff factor: retries wait 0, 2x, 4x ... this, plus jitter"
    )
    backoff_max: float = Field(30.0, ge=0, description="Cap of the exponential backoff")
    max_retry_after: float = Field(
        120.0, ge=0, description="Give up rather than wait a longer Retry-After"
    )
    max_bytes: int = Field(20_000_000, ge=1)
    concurrency: int = Field(16, ge=1)
    per_host: int = Field(4, ge=1)
    respect_robots: bool = True
    allow_private_networks: bool = False
    max_redirects: int = Field(10, ge=0)
    deadline: float | None = Field(
        None,
        gt=0,
        description="Seconds per URL, redirects and retries included; 4 x timeout",
    )
    proxy: str | None = Field(None, description="Send every request through this HTTP proxy")
    trust_env: bool = Field(False, description="Use HTTP(S)_PROXY and .netrc from the environment")
    respect_x_robots_tag: bool = True
    max_pixels: int = Field(MAX_PIXELS, ge=1, description="Larger images are too_large")

    @property
    def deadline_s(self) -> float:
        """Time one request may take in all, so a server dripping bytes cannot stall a worker."""
        return self.deadline if self.deadline is not None else self.timeout * 4


def make_session(config: FetchConfig, policy: AddressPolicy | None) -> requests.Session:
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


def configured_proxies(config: FetchConfig) -> list[str]:
    """The proxies requests may go through: `proxy`, else the environment's with trust_env."""
    if config.proxy:
        return [config.proxy]
    if config.trust_env:
        found = getproxies()
        return sorted({found[k] for k in ("http", "https", "all") if found.get(k)})
    return []


def proxy_refusal(config: FetchConfig, policy: AddressPolicy | None) -> str | None:
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


def retry_policy(config: FetchConfig) -> Retry:
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
    retry: Retry, config: FetchConfig, response: BaseHTTPResponse | None = None
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
