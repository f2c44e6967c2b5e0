"""Frozen copy of tasks/scrape/extract.py before issue 23 (a whole lxml tree, every candidate
extracted before max_candidates cuts the list, JSON-LD decoded whole): the baseline
bench/bench_hostile.py measures the streaming extractor against. Not used by pixelpipe."""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree

from bench.baseline_css import background_urls, css_urls
from storage.files import IMAGE_EXTENSIONS


class Candidate(NamedTuple):
    """An image URL found on a page, and the markup it came from (the `found_in` column)."""

    url: str
    found_in: str


# --- finding image URLs ------------------------------------------------------------------------


def parse_srcset(srcset: str) -> list[tuple[str, float | None, float | None]]:
    """`(url, width, density)` for each candidate of a srcset, per the HTML spec's rules:
    a URL runs to the next whitespace (it may contain commas); descriptors run to a comma."""
    out, i, n = [], 0, len(srcset)
    while i < n:
        while i < n and (srcset[i].isspace() or srcset[i] == ","):
            i += 1
        start = i
        while i < n and not srcset[i].isspace():
            i += 1
        url, descriptors = srcset[start:i], ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start = i
            depth = 0
            while i < n and (srcset[i] != "," or depth):
                depth += {"(": 1, ")": -1}.get(srcset[i], 0)
                i += 1
            descriptors = srcset[start:i]
        if url:
            out.append((url, *_descriptor(descriptors)))
    return out


def _descriptor(text: str) -> tuple[float | None, float | None]:
    width = density = None
    for token in text.split():
        number, unit = token[:-1], token[-1:].lower()
        try:
            value = float(number)
        except ValueError:
            continue
        if unit == "w":
            width = value
        elif unit == "x":
            density = value
    return width, density


def largest_candidate(candidates: Iterable[tuple[str, float | None, float | None]]) -> str | None:
    """The URL with the largest `w`; when no candidate has one, the largest `x` (default 1x).
    Ties keep the first, the order a browser would try."""
    candidates = list(candidates)
    if not candidates:
        return None
    if any(width is not None for _, width, _ in candidates):
        return max(candidates, key=lambda c: c[1] or 0)[0]
    return max(candidates, key=lambda c: c[2] or 1.0)[0]


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
JSON_LD_KEYS = ("image", "thumbnailUrl", "contentUrl")
JSON_LD_MAX_DEPTH = 32  # deeper JSON-LD is not a picture's description; bounds the walk


# --- JSON-LD: schema.org image, thumbnailUrl, contentUrl --------------------------------------


def json_ld_urls(text: str) -> list[tuple[str, str]]:
    """(url, key) for every image of a JSON-LD block, in document order, @graph and nested
    objects included: a string, an ImageObject (its contentUrl or url), or a list of either.
    Malformed JSON gives nothing."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return []
    found: list[tuple[str, str]] = []
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > JSON_LD_MAX_DEPTH:
            continue
        children = list(node.values()) if isinstance(node, dict) else node
        if isinstance(node, dict):
            for key in JSON_LD_KEYS:
                found += [(url, key) for url in _json_ld_images(node.get(key))]
        if isinstance(children, list):
            stack += [(c, depth + 1) for c in reversed(children) if isinstance(c, dict | list)]
    return found


def _json_ld_images(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, dict):
        url = value.get("contentUrl") or value.get("url")
        return [url] if isinstance(url, str) and url.strip() else []
    if isinstance(value, list):
        return [u for v in value if not isinstance(v, list) for u in _json_ld_images(v)]
    return []


# --- HTML elements ----------------------------------------------------------------------------


def _img_choice(img, tag: str = "img") -> tuple[str, str] | None:
    """The one URL an <img> (or <amp-img>) stands for: lazy attributes over srcset over a
    placeholder src."""
    for name in LAZY_SRCSET:
        if (value := _attr(img, name)) and (best := largest_candidate(parse_srcset(value))):
            return best, f"{tag}[{name}]"
    for name in LAZY_SRC:
        if value := _attr(img, name):
            return value, f"{tag}[{name}]"
    if best := largest_candidate(parse_srcset(_attr(img, "srcset"))):
        return best, f"{tag}[srcset]"
    if value := _attr(img, "src"):
        return value, f"{tag}[src]"
    return None


def _picture_choice(picture) -> tuple[str, str] | None:
    """The largest candidate over every <source> of a <picture>, else its <img>'s choice."""
    found, img = [], None
    for el in picture.iter("source", "img"):
        if el.tag == "img":
            img = el if img is None else img
        found += parse_srcset(
            _attr(el, "data-srcset") or _attr(el, "data-lazy-srcset") or _attr(el, "srcset")
        )
    if best := largest_candidate(found):
        return best, "picture[srcset]"
    return _img_choice(img) if img is not None else None


def _attr(el, name: str) -> str:
    return (el.get(name) or "").strip()


def _is_image_link(url: str) -> bool:
    return posixpath.splitext(urlsplit(url).path)[1].lower() in IMAGE_EXTENSIONS


def _resolve(base: str, raw: str) -> str:
    raw = raw.strip().replace("\t", "").replace("\n", "").replace("\r", "")  # as browsers do:
    if raw[:5].lower() == "data:":  # markup may wrap a long URL
        return raw  # urljoin would mangle it; it carries its own bytes
    return urljoin(base, raw).partition("#")[0]  # the first "#" starts the fragment


def _parse(html: str | bytes):
    """The document's root element (lxml: one C pass; bs4 took seconds on 1.7 MB), or None for
    an empty one. Bytes are read as UTF-8 when they are, else by their declared charset."""
    data, encoding = (html.encode("utf-8"), "utf-8") if isinstance(html, str) else (html, None)
    if encoding is None:
        try:
            html.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            pass  # libxml2 reads the page's <meta charset>
    try:  # one parser per call: lxml parsers are not to be shared between threads
        return lxml.html.document_fromstring(data, parser=lxml.html.HTMLParser(encoding=encoding))
    except etree.ParserError:  # empty, or nothing but comments and whitespace
        return None


def _meta(el) -> tuple[str, str] | None:
    kind = (_attr(el, "property") or _attr(el, "name")).lower()
    where = "og:image" if kind in OG_IMAGE else "twitter:image" if kind in TWITTER_IMAGE else ""
    content = _attr(el, "content")
    return (content, f"meta[{where}]") if where and content else None


_NAMING = frozenset(
    {"img", "amp-img", "picture", "meta", "a", "link", "video", "image", "script", "style"}
)


def _element(el, tag: str) -> list[tuple[str, str]]:
    """(raw url, found_in) for what one element names itself (its children aside)."""
    choice: tuple[str, str] | None = None
    if tag in ("img", "amp-img"):
        choice = _img_choice(el, tag)
    elif tag == "picture":
        choice = _picture_choice(el)
    elif tag == "meta":
        choice = _meta(el)
    elif tag == "a" and (href := _attr(el, "href")) and _is_image_link(href):
        choice = (href, "a[href]")
    elif tag == "link" and "image_src" in _attr(el, "rel").lower().split():
        choice = (_attr(el, "href"), "link[image_src]") if _attr(el, "href") else None
    elif tag == "video" and (poster := _attr(el, "poster")):
        choice = (poster, "video[poster]")
    elif tag == "image":  # SVG <image>; an HTML <image> is an old name for <img>
        for name in ("href", "xlink:href"):
            if value := _attr(el, name):
                return [(value, f"svg:image[{name}]")]
        choice = _img_choice(el, "img")
    elif tag == "script":
        if _attr(el, "type").split(";")[0].strip().lower() == "application/ld+json":
            return [(u, f"json-ld[{key}]") for u, key in json_ld_urls(el.text or "")]
    elif tag == "style":
        return [(u, "<style>") for u in background_urls(el.text or "")]
    return [choice] if choice else []


def _backgrounds(el) -> list[tuple[str, str]]:
    """Background pictures on any element: its style attribute and lazy background attributes."""
    found = [(u, "[style]") for u in background_urls(el.get("style") or "")]
    for name in _BACKGROUND_ATTRS.intersection(el.keys()) - {"style"}:
        value = _attr(el, name)
        if not value:
            continue
        if "url(" in value.lower():
            urls = css_urls(value)
        elif name == "data-bgset":
            best = largest_candidate(parse_srcset(re.sub(r"\[[^\]]*\]|\|", ",", value)))
            urls = [best] if best else []
        else:
            urls = [value]
        found += [(u, f"[{name}]") for u in urls]
    return found


class Page(NamedTuple):
    """What one parse of a page gives: its image candidates (at most `max_candidates`), how
    many more there were, and its same-site rel=next links."""

    candidates: list[Candidate]
    dropped: int
    next_urls: list[str]


def parse_page(html: str | bytes, page_url: str, max_candidates: int | None = None) -> Page:
    """Parse `html` once for both its image candidates and its next-page links."""
    root = _parse(html)
    if root is None:
        return Page([], 0, [])
    found = _candidates(root, page_url)
    kept = found if max_candidates is None else found[:max_candidates]
    return Page(kept, len(found) - len(kept), _next_urls(root, page_url))


def extract_candidates(html: str | bytes, page_url: str) -> list[Candidate]:
    """Every image URL on a page, absolute, in page order, each once with the first place it
    was found, in one walk over the parsed page. <noscript> fallbacks count (`noscript>...`); no
    <script> but JSON-LD is read; linked stylesheets are not fetched. Other schemes (javascript:,
    ftp:) are kept for the manifest to refuse; `data:` URIs are kept whole."""
    return parse_page(html, page_url).candidates


def _candidates(root, page_url: str) -> list[Candidate]:
    base, found = page_url, []
    skip: set = set()  # the <img>s of a <picture>, which stands for them
    fallback: set = set()  # everything inside a <noscript>
    for el in root.iter():
        tag = el.tag
        if not isinstance(tag, str) or (skip and el in skip):
            continue  # comments and processing instructions; a <picture>'s own <img>s
        tag = tag.lower()
        if tag == "base" and base is page_url and _attr(el, "href"):
            base = urljoin(page_url, _attr(el, "href"))
        elif tag == "noscript":
            fallback.update(el.iter())
        elif tag == "picture":
            skip.update(el.iter("img"))
        items = _element(el, tag) if tag in _NAMING else []
        if not _BACKGROUND_ATTRS.isdisjoint(el.keys()) and tag not in ("style", "script"):
            items += _backgrounds(el)
        if items:
            prefix = "noscript>" if fallback and el in fallback else ""
            found += [(raw, prefix + where) for raw, where in items]
    seen: set[str] = set()
    out = [Candidate(_resolve(base, raw), where) for raw, where in found]
    return [c for c in out if not (c.url in seen or seen.add(c.url))]


def extract_image_urls(html: str | bytes, base_url: str) -> list[str]:
    """The URLs of `extract_candidates`, without where they were found."""
    return [c.url for c in extract_candidates(html, base_url)]


def same_site(a: str, b: str) -> bool:
    """Same host, a leading `www.` ignored: where a "next page" link may lead."""
    ha, hb = (urlsplit(u).hostname or "" for u in (a, b))
    return ha.removeprefix("www.") == hb.removeprefix("www.") != ""


def next_page_urls(html: str | bytes, page_url: str) -> list[str]:
    """Same-site `rel="next"` links (<link> or <a>), absolute, in page order, each once."""
    return parse_page(html, page_url).next_urls


def _next_urls(root, page_url: str) -> list[str]:
    base = next((urljoin(page_url, h) for b in root.iter("base") if (h := _attr(b, "href"))), None)
    urls: list[str] = []
    for tag in root.iter("link", "a"):
        if "next" in _attr(tag, "rel").lower().split() and _attr(tag, "href"):
            url = _resolve(base or page_url, _attr(tag, "href"))
            web = urlsplit(url).scheme in ("http", "https")
            if web and same_site(url, page_url) and url not in urls:
                urls.append(url)
    return urls
