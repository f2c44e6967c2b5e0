"""Polite, guarded HTTP for the scraper: one pooled session, retries, robots.txt, SSRF checks."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util import Retry

from storage.errors import BlockedAddressError, ConfigError
from tasks.runtime import logger
from tasks.scrape.deadline import Deadline, Watchdog
from tasks.scrape.hosts import (
    USER_INFO_REFUSAL,
    HostKey,
    has_user_info,
    host_key,
    without_user_info,
)
from tasks.scrape.netguard import AddressPolicy, address_refusal, private_address_refusal
from tasks.scrape.robots import (
    MAX_CRAWL_DELAY_S,
    ROBOTS_MAX_BYTES,
    Pacer,
    RobotsRules,
    rules_from,
    x_robots_refusal,
)
from tasks.scrape.session import (
    configured_proxies,
    make_session,
    next_retry,
    proxy_refusal,
    retry_policy,
)
from tasks.scrape.settings import ScrapeSettings

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024
__all__ = ["AddressPolicy", "Fetched", "Fetcher", "ScrapeSettings"]  # what the tasks import here


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
    left_s: float = 0.0  # of the URL's deadline: what parsing the body may still take

    @property
    def ok(self) -> bool:
        return self.status is None


@dataclass
class _Budget:
    """Seconds of network time one URL has left: its redirects and retries share the
    deadline (waits between retries, outside the host slot, do not count)."""

    left: float


class _Refused(Exception):
    """Internal: a request ended with a scrape status (carried in args) instead of a body."""

    def __init__(self, status: str, error: str, http_status: int | None = None) -> None:
        super().__init__(status, error)
        self.status, self.error, self.http_status = status, error, http_status


# --- errors ------------------------------------------------------------------------------------


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


def policy_for(config: ScrapeSettings, policy: AddressPolicy | None = None) -> AddressPolicy | None:
    """The address policy in force: `policy`, else the private-address guard unless off."""
    if policy is not None:
        return policy
    return None if config.allow_private_networks else private_address_refusal


def check_proxy(config: ScrapeSettings, policy: AddressPolicy | None = None) -> None:
    """ConfigError when the proxy may not be used; the flow calls it before any work."""
    if reason := proxy_refusal(config, policy_for(config, policy)):
        raise ConfigError(reason)


class Fetcher:
    """GETs with a per-host limit, retries, robots.txt, a deadline and address checks on
    every hop. Thread-safe: the worker threads of one batch share it (and its pool)."""

    def __init__(self, config: ScrapeSettings, policy: AddressPolicy | None = None) -> None:
        self.config = config
        self.policy = policy_for(config, policy)
        check_proxy(config, self.policy)
        self.session = make_session(config, self.policy)
        self._proxied = bool(configured_proxies(config))
        self._lock = threading.Lock()
        # Every per-host table is keyed by the canonical host key (tasks.scrape.hosts).
        self._slots: dict[HostKey, threading.BoundedSemaphore] = {}
        self._robots: dict[HostKey, RobotsRules] = {}
        self._robots_locks: dict[HostKey, threading.Lock] = {}
        self._addresses: dict[tuple[str, int], str | None] = {}
        self._watchdog = Watchdog()
        self._pacer = Pacer()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()
        self._watchdog.stop()

    def get(
        self, url: str, max_bytes: int | None = None, robots: bool = True, *,
        truncate: bool = False, opt_outs: bool = False,
    ) -> Fetched:  # fmt: skip
        """Fetch `url` following redirects by hand, so each hop is checked like the first.

        `truncate`: keep the first `max_bytes` of a longer body instead of refusing it.
        `opt_outs`: refuse a response whose X-Robots-Tag opts out of datasets.
        """
        start = time.monotonic()
        result = Fetched(url=without_user_info(url), final_url=without_user_info(url))
        budget = _Budget(self.config.deadline_s)
        current = url
        try:
            for _ in range(self.config.max_redirects + 1):
                result.final_url = without_user_info(current)
                key, delay = self._check(current, robots)
                response, slot, deadline = self._request(current, key, result, budget, delay)
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
                    self._check_opt_outs(response, opt_outs)
                    limit = max_bytes or self.config.max_bytes
                    result.content = self._read(response, limit, deadline, truncate)
                    return result
                finally:
                    response.close()
                    self._give_back(deadline, budget, slot)
            raise _Refused("http_error", f"more than {self.config.max_redirects} redirects")
        except _Refused as refused:
            result.status, result.error = refused.status, refused.error
            result.http_status = refused.http_status or result.http_status
        except (ValueError, UnicodeError) as e:  # a URL requests or urllib3 cannot parse
            result.status, result.error = "http_error", f"invalid URL: {e}"
        finally:
            result.elapsed_s = time.monotonic() - start
            result.left_s = max(0.0, budget.left)
        return result

    def _check(self, url: str, robots: bool) -> tuple[HostKey, float]:
        """Refuse what may not be fetched; return the host key and its Crawl-delay (0: none).
        A URL with user info is refused here, before any request (robots.txt included)."""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise _Refused("unsupported_scheme", f"scheme {scheme or '(none)'!r} refused")
        if has_user_info(url):
            raise _Refused("blocked", USER_INFO_REFUSAL)
        key = host_key(url)  # ValueError: get() records the URL as invalid
        if reason := self._address_refusal(key):
            raise _Refused("blocked", reason)
        if not (robots and self.config.respect_robots):
            return key, 0.0
        rules = self._robots_for(key)
        if not rules.allows(url, self.config.user_agent):
            raise _Refused("robots_disallowed", rules.why)
        return key, min(rules.crawl_delay(self.config.user_agent) or 0.0, MAX_CRAWL_DELAY_S)

    def _check_opt_outs(self, response: requests.Response, opt_outs: bool) -> None:
        if not (opt_outs and self.config.respect_x_robots_tag):
            return
        # Each header line on its own: requests joins repeated headers with ", ", which would
        # apply one line's "otherbot:" prefix to the next line's directives.
        values = response.raw.headers.getlist("X-Robots-Tag") if response.raw else []
        if reason := x_robots_refusal(values, self.config.user_agent):
            raise _Refused("robots_disallowed", reason)

    def _request(
        self, url: str, key: HostKey, result: Fetched, budget: _Budget, crawl_delay: float = 0.0
    ) -> tuple[requests.Response, threading.BoundedSemaphore, Deadline]:
        """One GET with retries; returns the response open for streaming, the host slot and
        the deadline, still held, so the body counts against `per_host` and the deadline
        until the caller ends them."""
        retry, slot = retry_policy(self.config), self._slot(key)
        while True:
            result.attempts += 1
            slot.acquire()
            if crawl_delay:
                self._pacer.wait(key, crawl_delay)
            if budget.left <= 0:  # redirects and retries before used the URL's time up
                slot.release()
                raise _Refused("timeout", self._late())
            deadline = self._watchdog.start(budget.left)
            try:
                response = self.session.get(
                    url, stream=True, allow_redirects=False, timeout=self._timeouts(deadline)
                )
                if deadline.expired:  # cut off mid-headers: what arrived is not a response
                    response.close()
                    raise _Refused("timeout", self._late())
            except requests.RequestException as e:
                self._give_back(deadline, budget, slot)
                retry, delay = self._failure_delay(e, retry, deadline)
            except BaseException:
                self._give_back(deadline, budget, slot)
                raise
            else:
                has_wait = "Retry-After" in response.headers
                if not retry.is_retry("GET", response.status_code, has_wait):
                    return response, slot, deadline
                following = next_retry(retry, self.config, response.raw)
                if following is None:  # out of retries: the caller records the HTTP error
                    return response, slot, deadline
                retry, delay = following
                _drain(response)
                response.close()
                self._give_back(deadline, budget, slot)
            time.sleep(delay)  # outside the host slot: a waiting retry does not hold it

    def _timeouts(self, deadline: Deadline) -> tuple[float, float]:
        # Connecting may not outlast the deadline either; reads are cut by the watchdog.
        return max(0.001, min(self.config.timeout, deadline.left())), self.config.timeout

    def _failure_delay(
        self, error: requests.RequestException, retry: Retry, deadline: Deadline
    ) -> tuple[Retry, float]:
        """The retry state and wait after a failed connection, or the _Refused that ends it."""
        if blocked := _blocked_in(error):
            raise _Refused("blocked", str(blocked)) from None
        if deadline.expired:
            raise _Refused("timeout", self._late())
        timeout = _is_timeout(error)
        if timeout and not isinstance(error, requests.ConnectTimeout):
            # A server that accepted the connection but did not answer in time: retrying
            # would only tie a worker up for another full timeout.
            raise _Refused("timeout", f"no response within {self.config.timeout} s") from error
        following = None
        if isinstance(error, requests.ConnectionError):
            following = next_retry(retry, self.config)
        if following is None:
            status = "timeout" if timeout else "http_error"
            raise _Refused(status, f"{type(error).__name__}: {error}") from error
        return following

    def _read(
        self, response: requests.Response, limit: int, deadline: Deadline, truncate: bool
    ) -> bytes:
        """The body, refused as soon as it passes `limit` bytes (or cut there, `truncate`) or
        the deadline passes (the watchdog ends the read then, mid-chunk)."""
        declared = response.headers.get("Content-Length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise _Refused("too_large", f"Content-Length {declared} exceeds max_bytes {limit}")
        body = bytearray()
        try:
            for chunk in response.iter_content(CHUNK):
                body += chunk
                if len(body) > limit:
                    if truncate:
                        return bytes(body[:limit])
                    raise _Refused("too_large", f"more than max_bytes {limit} bytes")
        except requests.RequestException as e:
            if deadline.expired:
                raise _Refused("timeout", self._late()) from e
            status = "timeout" if _is_timeout(e) else "http_error"
            raise _Refused(status, f"reading the body failed: {e}") from e
        if deadline.expired:  # the watchdog's close looks like the end of an unsized body
            raise _Refused("timeout", self._late())
        return bytes(body)

    def _late(self) -> str:
        return f"no complete response within {self.config.deadline_s} s (the deadline)"

    def _give_back(
        self, deadline: Deadline, budget: _Budget, slot: threading.BoundedSemaphore
    ) -> None:
        """A request is over: its time comes off the URL's budget, its host slot is free."""
        self._watchdog.end(deadline)
        budget.left -= deadline.seconds - deadline.left()
        slot.release()

    def _address_refusal(self, key: HostKey) -> str | None:
        # Cached per fetcher (one batch): the guarded sockets still check every connection.
        where = (key.host, key.port)
        if where not in self._addresses:
            # Through a proxy, the proxy resolves the name: one we cannot resolve is refused.
            self._addresses[where] = address_refusal(*where, self.policy, self._proxied)
        return self._addresses[where]

    def _slot(self, key: HostKey) -> threading.BoundedSemaphore:
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = threading.BoundedSemaphore(self.config.per_host)
        return slot

    def _robots_for(self, key: HostKey) -> RobotsRules:
        """The host's robots.txt rules, fetched once however many workers ask at once."""
        with self._lock:
            lock = self._robots_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._robots:
                self._robots[key] = self._load_robots(key.origin)
        return self._robots[key]

    def _load_robots(self, origin: str) -> RobotsRules:
        """RFC 9309: the first 500 KiB parsed (redirects followed, at most max_redirects);
        a 4xx means no rules; a 5xx or an unreachable server means stay out."""
        fetched = self.get(
            origin + "/robots.txt", max_bytes=ROBOTS_MAX_BYTES, robots=False, truncate=True
        )
        body = fetched.content if fetched.ok else None
        rules = rules_from(body, fetched.http_status, fetched.error)
        asked = rules.crawl_delay(self.config.user_agent)
        if asked is not None and asked > MAX_CRAWL_DELAY_S:
            logger().warning(
                "%s/robots.txt asks for Crawl-delay %s s; waiting %s s between requests (the cap)",
                origin, asked, MAX_CRAWL_DELAY_S,
            )  # fmt: skip
        return rules
