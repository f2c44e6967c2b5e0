"""What sites ask of crawlers: robots.txt (RFC 9309, via protego), Crawl-delay, X-Robots-Tag."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from protego import Protego

from tasks.scrape.budget import Meter
from tasks.scrape.protego_compat import Rule, group_rules, normalised_path

ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least the first 500 KiB; the rest is cut off
# A Crawl-delay over this is cut to it: a site asking for 3600 s would otherwise tie a worker
# (and its host's slots) up for hours per image. Logged when it happens.
MAX_CRAWL_DELAY_S = 10.0
# X-Robots-Tag directives that keep an image out of a dataset: the ones img2dataset honours,
# and `none`, which means `noindex, nofollow`.
OPT_OUTS = frozenset({"noai", "noimageai", "noindex", "noimageindex", "none"})
# Wildcard rules matched one by one per URL, at most (RFC 9309 section 2.5 lets a crawler
# bound its work as long as it parses 500 KiB). Past it, a Disallow is widened to the literal
# part before its first `*` (it then refuses more, never less) and an Allow is dropped (ditto).
MAX_WILDCARD_RULES = 1000


class RuleMatcher:
    """One group's rules, compiled so that a check costs at most a few milliseconds whatever
    robots.txt holds: plain prefixes by dictionary per distinct length, `$`-anchored literals
    by one lookup, and at most MAX_WILDCARD_RULES wildcard rules tried, highest first."""

    def __init__(self, rules: list[Rule]) -> None:
        self.prefixes: dict[str, tuple[int, bool]] = {}  # pattern -> best (priority, allow)
        self.exact: dict[str, tuple[int, bool]] = {}
        self.wildcards: list[tuple[int, bool, list[str], bool]] = []
        for rule in rules:  # protego's order: priority, then Allow, descending
            anchored, pattern = rule.pattern.endswith("$"), rule.pattern
            if "*" not in pattern:
                table, key = (self.exact, pattern[:-1]) if anchored else (self.prefixes, pattern)
                table[key] = max(table.get(key, (-1, False)), (rule.priority, rule.allow))
            elif len(self.wildcards) < MAX_WILDCARD_RULES:
                parts = re.sub(r"\*+", "*", pattern.removesuffix("$") if anchored else pattern)
                self.wildcards.append((rule.priority, rule.allow, parts.split("*"), anchored))
            elif not rule.allow:
                key = pattern[: pattern.index("*")]
                self.prefixes[key] = max(
                    self.prefixes.get(key, (-1, False)), (rule.priority, False)
                )
        self.lengths = sorted({len(p) for p in self.prefixes}, reverse=True)

    def allows(self, path: str, meter: Meter) -> bool:
        """Whether the longest matching rule (Allow on a tie) allows `path` (normalised)."""
        best = self.exact.get(path, (-1, True))
        for length in self.lengths:
            if length <= len(path) and (hit := self.prefixes.get(path[:length])):
                best = max(best, hit)
        meter.spend(len(self.lengths) + 1)
        for priority, allow, parts, anchored in self.wildcards:
            meter.spend(1)
            if (priority, allow) <= best:
                break  # sorted: no later rule can win
            if _glob_match(parts, anchored, path):
                best = (priority, allow)
                break
        return best[1]


def _glob_match(parts: list[str], anchored: bool, path: str) -> bool:
    """Whether `path` starts with parts[0] and holds the rest in order (`*` between them),
    ending with the last one when `anchored`: leftmost matches, each part searched once."""
    if not path.startswith(parts[0]):
        return False
    pos = len(parts[0])
    for part in parts[1:-1]:
        if (pos := path.find(part, pos)) < 0:
            return False
        pos += len(part)
    last = parts[-1]
    if anchored:
        return len(path) - len(last) >= pos and path.endswith(last)
    return path.find(last, pos) >= 0


@dataclass(frozen=True)
class RobotsRules:
    """One origin's robots.txt: the parsed rules (None: all allowed or all refused) and what
    to say when they refuse a URL."""

    parser: Protego | None
    allow_all: bool
    why: str
    _matchers: dict[str, RuleMatcher | None] = field(default_factory=dict, compare=False)

    def allows(self, url: str, user_agent: str, meter: Meter | None = None) -> bool:
        if self.parser is None:
            return self.allow_all
        if urlsplit(url).path == "/robots.txt":
            return True  # as protego: robots.txt itself is always allowed
        if user_agent not in self._matchers:  # built once per agent; a race builds it twice
            rules = group_rules(self.parser, user_agent)
            self._matchers[user_agent] = None if rules is None else RuleMatcher(rules)
        matcher = self._matchers[user_agent]
        meter = meter if meter is not None else Meter()
        return matcher is None or matcher.allows(normalised_path(url), meter)

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
