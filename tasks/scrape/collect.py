"""The parser target extract.py feeds libxml2 with: it sees each element as it is read (no tree
is built), keeps the first `max_candidates` distinct image URLs and the rel=next links."""

from __future__ import annotations

import contextlib
import posixpath
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

from storage.files import IMAGE_EXTENSIONS
from tasks.scrape.budget import Meter
from tasks.scrape.css import background_urls, css_urls
from tasks.scrape.jsonld import json_ld_urls
from tasks.scrape.srcset import bgset_as_srcset, largest_candidate, parse_srcset


class Candidate(NamedTuple):
    """An image URL found on a page, and the markup it came from (the `found_in` column)."""

    url: str
    found_in: str


# Lazy-loading attributes (which plugin writes which: README, "What scrape finds"). On <img> and
# <amp-img> they win over srcset and src (a placeholder); the background ones count on any element.
LAZY_SRCSET = ("data-srcset", "data-lazy-srcset")
LAZY_SRC = ("data-src", "data-original", "data-lazy-src", "data-lazy", "data-echo")
LAZY_BACKGROUND = (
    *("data-bg", "data-bg-hidpi", "data-bg-multi"),
    *("data-background", "data-background-image", "data-bgset"),
)
_BACKGROUND_ATTRS = frozenset({"style", *LAZY_BACKGROUND})
OG_IMAGE = ("og:image", "og:image:url", "og:image:secure_url")
TWITTER_IMAGE = ("twitter:image", "twitter:image:src")
MAX_NEXT_URLS = 16  # rel=next links kept per page: the scrape follows the first
_NAMING = frozenset({"img", "amp-img", "meta", "a", "link", "video", "image"})

Item = tuple[str, str]  # (raw URL as written, found_in)


def _attr(attrib: dict, name: str) -> str:
    return (attrib.get(name) or "").strip()


def _img_choice(attrib: dict, tag: str, meter: Meter) -> Item | None:
    """The one URL an <img> (or <amp-img>) stands for: lazy attributes over srcset over a
    placeholder src."""
    for name in LAZY_SRCSET:
        value = _attr(attrib, name)
        if value and (best := largest_candidate(parse_srcset(value, meter))):
            return best, f"{tag}[{name}]"
    for name in LAZY_SRC:
        if value := _attr(attrib, name):
            return value, f"{tag}[{name}]"
    if best := largest_candidate(parse_srcset(_attr(attrib, "srcset"), meter)):
        return best, f"{tag}[srcset]"
    if value := _attr(attrib, "src"):
        return value, f"{tag}[src]"
    return None


def _meta(attrib: dict) -> Item | None:
    kind = (_attr(attrib, "property") or _attr(attrib, "name")).lower()
    where = "og:image" if kind in OG_IMAGE else "twitter:image" if kind in TWITTER_IMAGE else ""
    content = _attr(attrib, "content")
    return (content, f"meta[{where}]") if where and content else None


def _is_image_link(url: str) -> bool:
    try:
        path = urlsplit(url).path
    except ValueError:  # "//[x"
        return False
    return posixpath.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _element(tag: str, attrib: dict, meter: Meter) -> list[Item]:
    """(raw url, found_in) for what one element names itself (its children aside)."""
    choice: Item | None = None
    if tag in ("img", "amp-img"):
        choice = _img_choice(attrib, tag, meter)
    elif tag == "meta":
        choice = _meta(attrib)
    elif tag == "a" and (href := _attr(attrib, "href")) and _is_image_link(href):
        choice = (href, "a[href]")
    elif tag == "link" and "image_src" in _attr(attrib, "rel").lower().split():
        choice = (_attr(attrib, "href"), "link[image_src]") if _attr(attrib, "href") else None
    elif tag == "video" and (poster := _attr(attrib, "poster")):
        choice = (poster, "video[poster]")
    elif tag == "image":  # SVG <image>; an HTML <image> is an old name for <img>
        for name in ("href", "xlink:href"):
            if value := _attr(attrib, name):
                return [(value, f"svg:image[{name}]")]
        choice = _img_choice(attrib, "img", meter)
    return [choice] if choice else []


def _backgrounds(attrib: dict, meter: Meter) -> list[Item]:
    """Background pictures on any element: its style attribute and lazy background attributes."""
    found = [(u, "[style]") for u in background_urls(attrib.get("style") or "", meter)]
    for name in LAZY_BACKGROUND:
        if not (value := _attr(attrib, name)):
            continue
        if "url(" in value.lower():
            urls = css_urls(value, meter)
        elif name == "data-bgset":
            best = largest_candidate(parse_srcset(bgset_as_srcset(value, meter), meter))
            urls = [best] if best else []
        else:
            urls = [value]
        found += [(u, f"[{name}]") for u in urls]
    return found


def _resolve(base: str, raw: str) -> str:
    raw = raw.strip().replace("\t", "").replace("\n", "").replace("\r", "")  # as browsers do:
    if raw[:5].lower() == "data:":  # markup may wrap a long URL
        return raw  # urljoin would mangle it; it carries its own bytes
    return urljoin(base, raw).partition("#")[0]  # the first "#" starts the fragment


def same_site(a: str, b: str) -> bool:
    """Same host, a leading `www.` ignored: where a "next page" link may lead."""
    ha, hb = (urlsplit(u).hostname or "" for u in (a, b))
    return ha.removeprefix("www.") == hb.removeprefix("www.") != ""


class _Picture:
    """An open <picture>: the largest srcset candidate of its <source>s and <img>s so far (as
    largest_candidate picks: by width when any has one, else by density), its first <img>,
    and what elements inside it named, in order."""

    __slots__ = ("by_density", "by_width", "has_width", "img", "items", "prefix")

    def __init__(self, prefix: str, items: list[Item]) -> None:
        self.prefix, self.items = prefix, items
        self.img: dict | None = None
        self.by_width: tuple[str, float] | None = None
        self.by_density: tuple[str, float] | None = None
        self.has_width = False

    def add(self, candidates: list[tuple[str, float | None, float | None]]) -> None:
        for url, width, density in candidates:  # strictly larger: ties keep the first
            self.has_width |= width is not None
            if self.by_width is None or (width or 0) > self.by_width[1]:
                self.by_width = (url, width or 0)
            if self.by_density is None or (density or 1.0) > self.by_density[1]:
                self.by_density = (url, density or 1.0)

    def choice(self, meter: Meter) -> Item | None:
        best = self.by_width if self.has_width else self.by_density
        if best is not None:
            return best[0], "picture[srcset]"
        return _img_choice(self.img, "img", meter) if self.img is not None else None


def _is_json_ld(attrib: dict) -> bool:
    return _attr(attrib, "type").split(";")[0].strip().lower() == "application/ld+json"


class Collector:
    """An lxml parser target: start/end/data are called in page order as libxml2 reads.

    Relative URLs wait in `pending` until the base URL is settled: at the first <base href>,
    or when <body> starts (a <base> after that is not honoured), or at the end. Past
    `max_candidates` distinct URLs, what is found only counts as dropped; with `links_only`
    set (extract.py sets it between chunks once full), only rel=next links are looked at.
    """

    def __init__(self, page_url: str, max_candidates: int | None, meter: Meter) -> None:
        self.page_url = self.base = page_url
        self.cap, self.meter = max_candidates, meter
        self.settled, self.links_only = False, False
        self.pending: list[tuple[str, str | None]] = []  # found_in None: a rel=next link
        self.found: list[Candidate] = []
        self.seen: set[str] = set()
        self.dropped = 0
        self.next_urls: list[str] = []
        self.noscript = 0
        self.pictures: list[_Picture] = []
        self.text: list[str] | None = None  # the text of the <style> or JSON-LD being read
        self.text_tag = ""

    def full(self) -> bool:
        return self.cap is not None and len(self.found) >= self.cap

    def start(self, tag: str, attrib: dict) -> None:
        self.meter.spend(1 + len(attrib))
        if tag in ("body", "frameset"):
            self._settle()
        elif tag == "base" and not self.settled and (href := _attr(attrib, "href")):
            with contextlib.suppress(ValueError):  # "//[": not a URL, the page's own URL stays
                self.base = urljoin(self.page_url, href)
            self._settle()
        elif tag in ("a", "link") and "next" in _attr(attrib, "rel").lower().split():
            self._route([(_attr(attrib, "href"), None)] if _attr(attrib, "href") else [])
        if self.links_only:
            return
        if tag == "noscript":
            self.noscript += 1
        if self.pictures and tag in ("source", "img"):
            srcset = next((v for n in (*LAZY_SRCSET, "srcset") if (v := _attr(attrib, n))), "")
            self.pictures[-1].add(parse_srcset(srcset, self.meter))
            if tag == "img":  # a <picture> stands for its <img>s
                self.pictures[-1].img = self.pictures[-1].img or attrib
                return
        if tag == "picture":
            prefix = self._prefix()
            own = [(u, prefix + where) for u, where in _backgrounds(attrib, self.meter)]
            self.pictures.append(_Picture(prefix, own))
        elif tag == "style" or (tag == "script" and _is_json_ld(attrib)):
            self.text, self.text_tag = [], tag
        elif tag != "script":
            items = _element(tag, attrib, self.meter) if tag in _NAMING else []
            if not _BACKGROUND_ATTRS.isdisjoint(attrib):
                items += _backgrounds(attrib, self.meter)
            self._emit(items)

    def data(self, text: str) -> None:
        self.meter.spend(len(text))
        if self.text is not None:
            self.text.append(text)

    def end(self, tag: str) -> None:
        if tag == "noscript":
            self.noscript = max(0, self.noscript - 1)
        elif tag == "picture" and self.pictures:
            picture = self.pictures.pop()
            choice = picture.choice(self.meter)
            own = [(choice[0], picture.prefix + choice[1])] if choice else []
            self._route(own + picture.items)
        elif self.text is not None and tag == self.text_tag:
            text, self.text = "".join(self.text), None
            if tag == "style":
                self._emit([(u, "<style>") for u in background_urls(text, self.meter)])
            else:
                room = None if self.cap is None else max(0, self.cap - len(self.found)) + 1
                found = json_ld_urls(text, room, self.meter)
                self._emit([(u, f"json-ld[{key}]") for u, key in found])

    def close(self) -> None:
        self._settle()

    def _prefix(self) -> str:
        return "noscript>" if self.noscript else ""

    def _emit(self, items: list[Item]) -> None:
        prefix = self._prefix()
        self._route([(raw, prefix + where) for raw, where in items])

    def _route(self, items: list[tuple[str, str | None]]) -> None:
        """Items go to the open <picture> (which comes first), or wait for the base URL, or
        are resolved now."""
        if self.pictures:
            inside = self.pictures[-1].items
            room = len(items) if self.cap is None else max(0, self.cap + 1 - len(inside))
            inside += items[:room]  # more than the cap inside one <picture> would be dropped
        elif not self.settled:
            self.pending += items
            if self.cap is not None and len(self.pending) > 4 * self.cap:
                self._settle()  # a <base> after this many URLs is too late to wait for
        else:
            for raw, where in items:
                self._add(raw, where)

    def _settle(self) -> None:
        if not self.settled:
            self.settled = True
            for raw, where in self.pending:
                self._add(raw, where)
            self.pending = []

    def _add(self, raw: str, where: str | None) -> None:
        try:
            url = _resolve(self.base, raw)
        except ValueError:  # "//[x": urlsplit cannot read it, nothing could fetch it
            return
        if where is None:  # a rel=next link
            web = urlsplit(url).scheme in ("http", "https")
            if web and same_site(url, self.page_url) and url not in self.next_urls:
                self.next_urls += [url] if len(self.next_urls) < MAX_NEXT_URLS else []
        elif url not in self.seen:
            self.seen.add(url)
            if self.full():
                self.dropped += 1
            else:
                self.found.append(Candidate(url, where))
