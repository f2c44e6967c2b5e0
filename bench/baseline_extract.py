"""Frozen copy of extract_candidates before issue 20 (bs4 + lxml tree, <img>/<picture>/<a>/og:image
only): the baseline bench/bench_extract.py measures the current extractor against. Not used by
pixelpipe itself."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import NamedTuple
from urllib.parse import urldefrag, urljoin, urlsplit

from bs4 import BeautifulSoup, Tag

from storage.files import IMAGE_EXTENSIONS

# srcset parsing did not change with issue 20: the baseline shares it.
from tasks.scrape.extract import largest_candidate, parse_srcset

LAZY_SRC = ("data-src", "data-original", "data-lazy-src")
OG_IMAGE = ("og:image", "og:image:url", "og:image:secure_url")


class Candidate(NamedTuple):
    """An image URL found on a page, and the markup it came from (the `found_in` column)."""

    url: str
    found_in: str


# --- finding image URLs ------------------------------------------------------------------------


def _img_choice(img: Tag) -> tuple[str, str] | None:
    """The one URL an <img> stands for: lazy attributes over srcset over a placeholder src."""
    if best := largest_candidate(parse_srcset(_attr(img, "data-srcset"))):
        return best, "img[data-srcset]"
    for name in LAZY_SRC:
        if value := _attr(img, name):
            return value, f"img[{name}]"
    if best := largest_candidate(parse_srcset(_attr(img, "srcset"))):
        return best, "img[srcset]"
    if value := _attr(img, "src"):
        return value, "img[src]"
    return None


def _picture_choice(picture: Tag) -> tuple[str, str] | None:
    """The largest candidate over every <source> of a <picture>, else its <img>'s choice."""
    found = []
    for source in picture.find_all("source"):
        found += parse_srcset(_attr(source, "data-srcset") or _attr(source, "srcset"))
    img = picture.find("img")
    if img is not None:
        found += parse_srcset(_attr(img, "data-srcset") or _attr(img, "srcset"))
    if best := largest_candidate(found):
        return best, "picture[srcset]"
    return _img_choice(img) if img is not None else None


def _attr(tag: Tag, name: str) -> str:
    value = tag.get(name)
    if isinstance(value, list):  # bs4 splits multi-valued attributes such as class
        value = " ".join(value)
    return (value or "").strip()


def _is_image_link(url: str) -> bool:
    return PurePosixPath(urlsplit(url).path).suffix.lower() in IMAGE_EXTENSIONS


def _base_url(soup: BeautifulSoup, page_url: str) -> str:
    base = soup.find("base", href=True)
    return urljoin(page_url, _attr(base, "href")) if base is not None else page_url


def _resolve(base: str, raw: str) -> str:
    raw = re.sub(r"[\t\n\r]", "", raw)  # as browsers do: markup may wrap a long URL
    if raw.lower().startswith("data:"):
        return raw  # urljoin would mangle it; it carries its own bytes
    return urldefrag(urljoin(base, raw))[0]


def extract_candidates(html: str | bytes, page_url: str) -> list[Candidate]:
    """Every image URL on a page, absolute, in page order, each once.

    Non-http(s) URLs (javascript:, ftp:, ...) are kept so the manifest can say they were
    refused; `data:` URIs are kept whole.
    """
    soup = BeautifulSoup(html, "lxml")
    base = _base_url(soup, page_url)
    found: list[Candidate] = []
    in_picture: set[int] = set()
    for tag in soup.find_all(["meta", "picture", "img", "a"]):
        choice = None
        if tag.name == "meta" and _attr(tag, "property").lower() in OG_IMAGE:
            choice = (_attr(tag, "content"), "meta[og:image]") if _attr(tag, "content") else None
        elif tag.name == "picture":
            in_picture.update(id(img) for img in tag.find_all("img"))
            choice = _picture_choice(tag)
        elif tag.name == "img" and id(tag) not in in_picture:
            choice = _img_choice(tag)
        elif tag.name == "a" and (href := _attr(tag, "href")) and _is_image_link(href):
            choice = (href, "a[href]")
        if choice:
            found.append(Candidate(_resolve(base, choice[0]), choice[1]))
    seen: set[str] = set()
    return [c for c in found if not (c.url in seen or seen.add(c.url))]
