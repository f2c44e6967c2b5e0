"""Image URLs in a page's HTML: every form a browser or a link preview shows (pure functions).

The page is fed to libxml2 in chunks with a parser target (tasks.scrape.collect): no tree is
built, extraction stops at `max_candidates` as it goes, and a Meter stops it at a deadline.
"""

from __future__ import annotations

from typing import NamedTuple

from lxml import etree

from tasks.scrape.budget import Meter, ParseTimeout
from tasks.scrape.collect import Candidate, Collector, same_site
from tasks.scrape.srcset import largest_candidate, parse_srcset

__all__ = [
    "Candidate",
    "Page",
    "extract_candidates",
    "extract_image_urls",
    "largest_candidate",
    "next_page_urls",
    "parse_page",
    "parse_srcset",
    "same_site",
]

CHUNK = 64 * 1024  # bytes fed to libxml2 at a time: the cap and the deadline are looked at between


class Page(NamedTuple):
    """What one parse of a page gives: its image candidates (at most `max_candidates`), how
    many more distinct ones were seen before reading stopped (a lower bound once the cap is
    reached: the rest of the page is not read for images), its same-site rel=next links, and
    whether parsing stopped at the deadline (then the candidates are those found before)."""

    candidates: list[Candidate]
    dropped: int
    next_urls: list[str]
    timed_out: bool = False


def _bytes(html: str | bytes) -> tuple[bytes, str | None]:
    """The page's bytes and their encoding: UTF-8 when they are, else None for libxml2 to
    read the page's <meta charset>."""
    if isinstance(html, str):
        return html.encode("utf-8", "replace"), "utf-8"
    try:
        html.decode("utf-8")
    except UnicodeDecodeError:
        return html, None
    return html, "utf-8"


def parse_page(
    html: str | bytes,
    page_url: str,
    max_candidates: int | None = None,
    meter: Meter | None = None,
) -> Page:
    """Parse `html` once for its image candidates and its next-page links.

    Reading stops once `max_candidates` distinct URLs are found and a next-page link is
    known (or the page ends); it stops at once when `meter`'s deadline passes.
    """
    meter = meter if meter is not None else Meter()
    data, encoding = _bytes(html)
    collector = Collector(page_url, max_candidates, meter)
    # One parser per call: lxml parsers are not to be shared between threads.
    parser = etree.HTMLParser(target=collector, encoding=encoding)
    timed_out = False
    try:
        for start in range(0, len(data), CHUNK):
            parser.feed(data[start : start + CHUNK])
            meter.spend(min(CHUNK, len(data) - start))
            meter.check()  # after each chunk, whatever the count: libxml2's time counts too
            if collector.full() and collector.next_urls:
                break  # what is left could only add dropped URLs
            collector.links_only = collector.full()
        parser.close()
    except etree.XMLSyntaxError:
        pass  # empty, or nothing but comments and whitespace
    except ParseTimeout:
        timed_out = True
    collector.close()  # settles the base URL if the page never did
    return Page(collector.found, collector.dropped, collector.next_urls, timed_out)


def extract_candidates(html: str | bytes, page_url: str) -> list[Candidate]:
    """Every image URL on a page, absolute, in page order, each once with the first place it
    was found, in one pass over the page. <noscript> fallbacks count (`noscript>...`); no
    <script> but JSON-LD is read; linked stylesheets are not fetched. Other schemes (javascript:,
    ftp:) are kept for the manifest to refuse; `data:` URIs are kept whole."""
    return parse_page(html, page_url).candidates


def extract_image_urls(html: str | bytes, base_url: str) -> list[str]:
    """The URLs of `extract_candidates`, without where they were found."""
    return [c.url for c in extract_candidates(html, base_url)]


def next_page_urls(html: str | bytes, page_url: str) -> list[str]:
    """Same-site `rel="next"` links (<link> or <a>), absolute, in page order, each once."""
    return parse_page(html, page_url).next_urls
