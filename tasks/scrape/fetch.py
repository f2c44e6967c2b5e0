"""Polite, guarded HTTP for the scraper: one pooled session, retries, robots.txt, SSRF checks."""

from __future__ import annotations

import contextlib
import email.utils
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import requests
from pydantic import BaseModel, ConfigDict, Field
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

from storage.errors import BlockedAddressError
from tasks.scrape.netguard import (
    AddressPolicy,
    GuardedAdapter,
    address_refusal,
    private_address_refusal,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least the first 500 KiB
CHUNK = 64 * 1024


class FetchConfig(BaseModel):
    """Everything the HTTP client needs; plain values so a task can take it as an argument."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_agent: str = "pixelpipe"
    timeout: float = Field(15.0, gt=0, description="Connect and read timeout, seconds")
    retries: int = Field(3, ge=0)
    backoff: float = Field(0.5, ge=0, description="First retry waits about this long")
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

    @property
    def deadline_s(self) -> float:
        """Time a body may take to arrive, so a server dripping bytes cannot stall a worker."""
        return self.timeout * 4


@dataclass
class Fetched:
    """The outcome of one GET: the body, or the scrape status that says why there is none."""

    url: str
    final_url: str
    content: bytes | None = None
    status: str | None = None  # None: success; else a scrape_manifest status
    http_status: int | None = None
    error: str | None = None
    content_type: str | None = None
    attempts: int = 0
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is None


class _Refused(Exception):
    """Internal: a request ended with a scrape status (carried in args) instead of a body."""

    def __init__(self, status: str, error: str, http_status: int | None = None) -> None:
        super().__init__(status, error)
        self.status, self.error, self.http_status = status, error, http_status


def make_session(config: FetchConfig, policy: AddressPolicy | None) -> requests.Session:
    """One session for all workers: its pool holds a connection per worker for each host."""
    session = requests.Session()
    session.headers["User-Agent"] = config.user_agent
    pool = {"pool_connections": 32, "pool_maxsize": config.concurrency, "max_retries": 0}
    adapter = GuardedAdapter(policy, **pool) if policy else HTTPAdapter(**pool)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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
    attempt: int, retry_after: float | None, config: FetchConfig, rng: random.Random
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


def _in_chain(error: BaseException, kinds: type | tuple[type, ...]) -> BaseException | None:
    """requests wraps urllib3's errors, which wrap socket errors: find one of `kinds`."""
    seen: set[int] = set()
    stack: list[object] = [error]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kinds):
            return item
        stack += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return None


def _blocked_in(error: BaseException) -> BlockedAddressError | None:
    return _in_chain(error, BlockedAddressError)  # type: ignore[return-value]


def _is_timeout(error: BaseException) -> bool:
    if isinstance(error, requests.ConnectionError) and _in_chain(error, NewConnectionError):
        return False  # urllib3 2 makes NewConnectionError a ConnectTimeoutError: it is not
    kinds = (requests.Timeout, ReadTimeoutError, ConnectTimeoutError, TimeoutError)
    return _in_chain(error, kinds) is not None


def _drain(response: requests.Response, limit: int = 64 * 1024) -> None:
    """Read a small unwanted body (a redirect, an error page) so the connection can go back
    to the pool; closing it unread would make the next request open a new one."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) <= limit:
        with contextlib.suppress(requests.RequestException):
            response.content  # noqa: B018 - reading it is the point


def _http_error(response: requests.Response) -> str:
    wait = response.headers.get("Retry-After")
    return f"HTTP {response.status_code}" + (f" (Retry-After: {wait})" if wait else "")


# --- the client --------------------------------------------------------------------------------


class Fetcher:
    """GETs with a per-host limit, retries, robots.txt and address checks on every hop.

    Thread-safe: the worker threads of one batch share it (and its connection pool).
    """

    def __init__(self, config: FetchConfig, policy: AddressPolicy | None = None) -> None:
        self.config = config
        default = None if config.allow_private_networks else private_address_refusal
        self.policy = policy if policy is not None else default
        self.session = make_session(config, self.policy)
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._robots: dict[str, tuple[RobotFileParser, str]] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self._addresses: dict[tuple[str, int], str | None] = {}
        self._rng = random.Random()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def get(self, url: str, max_bytes: int | None = None, robots: bool = True) -> Fetched:
        """Fetch `url` following redirects by hand, so each hop is checked like the first."""
        start = time.monotonic()
        result = Fetched(url=url, final_url=url)
        current = url
        try:
            for _ in range(self.config.max_redirects + 1):
                result.final_url = current
                self._check(current, robots)
                response, slot = self._request(current, result)
                try:
                    result.http_status = response.status_code
                    result.content_type = response.headers.get("Content-Type")
                    location = response.headers.get("Location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        current = urljoin(current, location.strip())
                        _drain(response)
                        continue
                    if response.status_code >= 400:
                        _drain(response)
                        raise _Refused("http_error", _http_error(response))
                    result.content = self._read(response, max_bytes or self.config.max_bytes)
                    return result
                finally:
                    response.close()
                    slot.release()
            raise _Refused("http_error", f"more than {self.config.max_redirects} redirects")
        except _Refused as refused:
            result.status, result.error = refused.status, refused.error
            result.http_status = refused.http_status or result.http_status
        except (ValueError, UnicodeError) as e:  # a URL requests or urllib3 cannot parse
            result.status, result.error = "http_error", f"invalid URL: {e}"
        finally:
            result.elapsed_s = time.monotonic() - start
        return result

    def _check(self, url: str, robots: bool) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise _Refused("unsupported_scheme", f"scheme {parts.scheme or '(none)'!r} refused")
        if not parts.hostname:
            raise _Refused("http_error", "URL has no host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if reason := self._address_refusal(parts.hostname, port):
            raise _Refused("blocked", reason)
        if robots and self.config.respect_robots:
            parser, why = self._robots_for(url)
            if not parser.can_fetch(self.config.user_agent, url):
                raise _Refused("robots_disallowed", why)

    def _request(
        self, url: str, result: Fetched
    ) -> tuple[requests.Response, threading.BoundedSemaphore]:
        """One GET with retries; returns the response open for streaming and the host slot,
        still held, so the body counts against `per_host` until the caller releases it."""
        attempt, slot = 0, self._slot(url)
        while True:
            result.attempts += 1
            slot.acquire()
            try:
                response = self.session.get(
                    url, stream=True, allow_redirects=False, timeout=self.config.timeout
                )
            except requests.RequestException as e:
                slot.release()
                delay = self._failure_delay(e, attempt)
            except BaseException:
                slot.release()
                raise
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response, slot
                wait = parse_retry_after(response.headers.get("Retry-After"))
                delay = self._delay(attempt, wait)
                if delay is None:
                    return response, slot  # out of retries: the caller records the HTTP error
                _drain(response)
                response.close()
                slot.release()
            time.sleep(delay)  # outside the host slot: a waiting retry does not hold it
            attempt += 1

    def _failure_delay(self, error: requests.RequestException, attempt: int) -> float:
        """How long to wait after a failed connection, or the _Refused that ends the URL."""
        if blocked := _blocked_in(error):
            raise _Refused("blocked", str(blocked)) from None
        timeout = _is_timeout(error)
        if timeout and not isinstance(error, requests.ConnectTimeout):
            # A server that accepted the connection but did not answer in time: retrying
            # would only tie a worker up for another full timeout.
            raise _Refused("timeout", f"no response within {self.config.timeout} s") from error
        delay = self._delay(attempt, None) if isinstance(error, requests.ConnectionError) else None
        if delay is None:
            status = "timeout" if timeout else "http_error"
            raise _Refused(status, f"{type(error).__name__}: {error}") from error
        return delay

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        if attempt >= self.config.retries:
            return None
        return retry_delay(attempt, retry_after, self.config, self._rng)

    def _read(self, response: requests.Response, limit: int) -> bytes:
        """The body, refused as soon as it passes `limit` bytes or the deadline."""
        start = time.monotonic()
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _Refused("too_large", f"Content-Length {declared} exceeds max_bytes {limit}")
        body = bytearray()
        try:
            for chunk in response.iter_content(CHUNK):
                body += chunk
                if len(body) > limit:
                    raise _Refused("too_large", f"more than max_bytes {limit} bytes")
                if time.monotonic() - start > self.config.deadline_s:
                    raise _Refused("timeout", f"body took over {self.config.deadline_s} s")
        except requests.RequestException as e:
            status = "timeout" if _is_timeout(e) else "http_error"
            raise _Refused(status, f"reading the body failed: {e}") from e
        return bytes(body)

    def _address_refusal(self, host: str, port: int) -> str | None:
        # Cached per fetcher (one batch): the guarded sockets still check every connection.
        key = (host.lower(), port)
        if key not in self._addresses:
            self._addresses[key] = address_refusal(host, port, self.policy)
        return self._addresses[key]

    def _slot(self, url: str) -> threading.BoundedSemaphore:
        host = urlsplit(url).netloc.lower()
        with self._lock:
            slot = self._slots.get(host)
            if slot is None:
                slot = self._slots[host] = threading.BoundedSemaphore(self.config.per_host)
        return slot

    def _robots_for(self, url: str) -> tuple[RobotFileParser, str]:
        """The origin's robots.txt rules, fetched once however many workers ask at once,
        and what to say when they refuse a URL."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc.lower()}"
        with self._lock:
            lock = self._robots_locks.setdefault(origin, threading.Lock())
        with lock:
            if origin not in self._robots:
                self._robots[origin] = self._load_robots(origin)
        return self._robots[origin]

    def _load_robots(self, origin: str) -> tuple[RobotFileParser, str]:
        """RFC 9309: a 4xx means no rules; a 5xx or an unreachable server means stay out."""
        parser = RobotFileParser(origin + "/robots.txt")
        fetched = self.get(origin + "/robots.txt", max_bytes=ROBOTS_MAX_BYTES, robots=False)
        if fetched.ok:
            parser.parse(fetched.content.decode("utf-8", "replace").splitlines())
            return parser, "robots.txt disallows this URL"
        if fetched.http_status is not None and 400 <= fetched.http_status < 500:
            parser.allow_all = True
        else:
            parser.disallow_all = True
        return parser, f"robots.txt could not be read ({fetched.error}), so the site is off limits"
