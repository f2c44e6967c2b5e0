"""Property-based tests (Hypothesis) of the page extractor: any page, or any bytes, parses
without raising; URLs come out absolute, each once; the cap keeps the first `max_candidates`
of what an uncapped parse finds; the work counted per page grows linearly, and stops growing
once the cap is reached and a next-page link is known; a passed deadline stops the parse."""

import html
import json
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.scrape.budget import Meter
from tasks.scrape.collect import MAX_NEXT_URLS
from tasks.scrape.extract import CHUNK, parse_page, same_site

PAGE = "https://example.com/gallery/page.html"
BASE = "https://static.example.net/assets/"
SAFE = st.from_regex(r"[a-z0-9][a-z0-9/._-]{0,10}", fullmatch=True)  # a relative path
ANY = st.text(max_size=12)


def a(value: str) -> str:
    return html.escape(value, quote=True)


FORMS = [
    lambda v: f'<img src="{a(v)}">',
    lambda v: f'<img data-src="{a(v)}" src="p.gif">',
    lambda v: f'<img srcset="{a(v)} 1x, {a(v)}2 2x">',
    lambda v: f'<picture><source srcset="{a(v)} 100w"><img src="{a(v)}f"></picture>',
    lambda v: f'<a href="{a(v)}.jpg">x</a>',
    lambda v: f'<meta property="og:image" content="{a(v)}">',
    lambda v: f"<div style=\"background:url('{a(v)}')\"></div>",
    lambda v: f'<div data-bgset="{a(v)} 1x | {a(v)}b 2x"></div>',
    lambda v: f'<noscript><img src="{a(v)}n"></noscript>',
    lambda v: f"<style>.x{{background-image:url({v.replace('<', '')}s)}}</style>",
    lambda v: (
        f'<script type="application/ld+json">{json.dumps({"image": v}).replace("<", "")}</script>'
    ),
    lambda v: f'<a rel="next" href="{a(v)}.html">n</a>',
    lambda v: f'<video poster="{a(v)}"></video><svg><image href="{a(v)}v"/></svg>',
]


def pages(values: st.SearchStrategy[str], max_size: int = 25) -> st.SearchStrategy[str]:
    """Pages of the forms above; a <base> (if any) comes first, where pages put it."""
    body = st.lists(st.tuples(st.integers(0, len(FORMS) - 1), values), max_size=max_size)
    head = st.sampled_from(["", f'<head><base href="{BASE}"></head>'])
    return st.tuples(head, body).map(lambda t: t[0] + "".join(FORMS[i](v) for i, v in t[1]))


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(pages(ANY))
def test_any_page_gives_absolute_urls_each_once_without_fragments(page):
    got = parse_page(page, PAGE)
    urls = [c.url for c in got.candidates]
    assert len(urls) == len(set(urls))
    for url in urls:
        assert urlsplit(url).scheme, url
        assert url.startswith("data:") or ("#" not in url and not set(url) & set("\t\n\r"))
    assert len(got.next_urls) <= MAX_NEXT_URLS
    assert all(
        urlsplit(u).scheme in ("http", "https") and same_site(u, PAGE) for u in got.next_urls
    )


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(pages(SAFE))
def test_relative_paths_become_http_urls_on_the_page_or_base_host(page):
    host = "static.example.net" if "<base" in page else "example.com"
    for c in parse_page(page, PAGE).candidates:
        parts = urlsplit(c.url)
        assert (parts.scheme, parts.hostname) == ("https", host), c


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(pages(SAFE, 40), st.integers(1, 8))
def test_the_cap_keeps_the_first_candidates_of_an_uncapped_parse(page, cap):
    capped, whole = parse_page(page, PAGE, cap), parse_page(page, PAGE)
    assert capped.candidates == whole.candidates[:cap]
    assert capped.dropped <= len(whole.candidates) - len(capped.candidates)
    assert capped.next_urls == whole.next_urls[: len(capped.next_urls)]


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(st.binary(max_size=300))
def test_any_bytes_parse_without_raising(data):
    assert isinstance(parse_page(data, PAGE, 5).candidates, list)


def work(page: str, cap: int | None = None) -> int:
    meter = Meter()
    parse_page(page, PAGE, cap, meter)
    return meter.spent


@settings(max_examples=25, deadline=None)
@given(pages(ANY, 8).filter(bool))
def test_work_grows_linearly_with_the_page(unit):
    small, large = work(unit * 40), work(unit * 160)
    assert large <= 4.5 * small + 64


def test_past_the_cap_with_a_next_link_known_the_rest_is_not_read():
    head = '<link rel="next" href="page2.html">'
    imgs = "".join(f'<img src="/i/{i}.jpg">' for i in range(40_000))  # about 10 chunks
    small, large = work(head + imgs, cap=100), work(head + imgs * 4, cap=100)
    assert small == large  # one chunk read, whatever the page's length
    assert small < 2 * CHUNK
    page = parse_page(head + imgs * 4, PAGE, 100)
    assert len(page.candidates) == 100 and page.next_urls == [PAGE.replace("page", "page2")]


def test_past_the_cap_the_rest_is_read_only_for_the_next_link():
    imgs = "".join(
        f'<img src="/i/{i}.jpg" srcset="/i/{i}.jpg 1x, /i/{i}b.jpg 2x">' for i in range(40_000)
    )
    page = parse_page(imgs + '<a rel="next" href="p2.html">more</a>', PAGE, 10)
    assert [c.url for c in page.candidates][:1] == ["https://example.com/i/0b.jpg"]
    assert page.next_urls == ["https://example.com/gallery/p2.html"]
    assert 0 < page.dropped < 40_000  # counted in the chunk that hit the cap only


def test_a_passed_deadline_stops_after_the_chunk_in_hand_and_keeps_what_it_found():
    imgs = "".join(f'<img src="/i/{i}.jpg">' for i in range(40_000))
    whole = parse_page(imgs, PAGE)
    cut = parse_page(imgs, PAGE, meter=Meter(seconds=0.0))
    assert cut.timed_out and not whole.timed_out
    assert 0 < len(cut.candidates) < len(whole.candidates)
    assert cut.candidates == whole.candidates[: len(cut.candidates)]
