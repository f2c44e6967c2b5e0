"""What sites ask of crawlers: robots.txt (RFC 9309, via protego), Crawl-delay, X-Robots-Tag."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from protego import Protego

ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least the first 500 KiB; the rest is cut off
# A Crawl-delay over this is cut to it: a site asking for 3600 s would otherwise tie a worker
# (and its host's slots) up for hours per image. Logged when it happens.
MAX_CRAWL_DELAY_S = 10.0
# X-Robots-Tag directives that keep an image out of a dataset: the ones img2dataset honours,
# and `none`, which means `noindex, nofollow`.
OPT_OUTS = frozenset({"noai", "noimageai", "noindex", "noimageindex", "none"})


@dataclass(frozen=True)
class RobotsRules:
    """One origin's robots.txt: the parsed rules (None: all allowed or all refused) and what
    to say when they refuse a URL."""

    parser: Protego | None
    allow_all: bool
    why: str

    def allows(self, url: str, user_agent: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return self.parser.can_fetch(url, user_agent)

    def crawl_delay(self, user_agent: str) -> float | None:
        return None if self.parser is None else self.parser.crawl_delay(user_agent)


def rules_from(body: bytes | None, http_status: int | None, error: str | None) -> RobotsRules:
    """RFC 9309 section 2.3.1: a body is parsed; a 4xx means no rules; a 5xx or an unreachable
    server means stay out. `body` is already cut to ROBOTS_MAX_BYTES by the fetch."""
    if body is not None:
        text = body.decode("utf-8", "replace")
        return RobotsRules(Protego.parse(text), True, "robots.txt disallows this URL")
    if http_status is not None and 400 <= http_status < 500:
        return RobotsRules(None, True, "")
    why = f"robots.txt could not be read ({error}), so the site is off limits"
    return RobotsRules(None, False, why)


def product_token(user_agent: str) -> str:
    """`pixelpipe` of `pixelpipe/0.1 (+...)`: the name a per-agent directive addresses."""
    return user_agent.split("/", 1)[0].split()[0].strip().lower() if user_agent.strip() else ""


def x_robots_refusal(values: Iterable[str], user_agent: str) -> str | None:
    """Why X-Robots-Tag header values opt this response out, or None.

    Each value is `directive, directive` (for every crawler) or `agent: directive, ...` (for
    that agent only), as img2dataset reads them; unknown directives are ignored.
    """
    token = product_token(user_agent)
    for value in values:
        agent, sep, rest = value.partition(":")
        agent = agent.strip().lower()
        # `noindex, unavailable_after: <date>` has a colon but no agent before it.
        if sep and agent and "," not in agent and agent not in OPT_OUTS | {"unavailable_after"}:
            if agent != token:
                continue  # addressed to another crawler
            value = rest
        found = {d.strip().lower() for d in value.split(",")}
        if hits := sorted(found & OPT_OUTS):
            return f"X-Robots-Tag opts out ({', '.join(hits)})"
    return None


class Pacer:
    """Crawl-delay per host: request starts to one host at least `delay` seconds apart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def wait(self, host: str, delay: float) -> None:
        """Reserve the host's next start time and sleep until it (the reservation is made
        under the lock, so threads queue up `delay` apart instead of all waking at once)."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(host, now))
            self._next[host] = start + delay
        if start > now:
            time.sleep(start - now)
