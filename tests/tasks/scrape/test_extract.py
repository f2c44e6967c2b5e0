"""Pure parts of the scraper: finding image URLs in HTML, data: URIs, image checks, dedupe."""

import base64
import io

import pytest
from PIL import Image

from tasks.scrape.extract import (
    extract_candidates,
    extract_image_urls,
    largest_candidate,
    next_page_urls,
    parse_page,
    parse_srcset,
)
from tasks.scrape.images import check_image, decode_data_uri
from tasks.scrape.manifest import duplicates, interleave_by_host, manifest_row, mark_duplicates
from tests.http_server import noise_jpeg, picture, png_header_only

PAGE = "https://example.com/gallery/page.html"


def urls(html: str, page: str = PAGE) -> list[str]:
    return extract_image_urls(html, page)


def test_img_src_is_resolved_against_the_page():
    html = '<img src="a.jpg"><img src="/b.png"><img src="https://cdn.example.org/c.gif">'
    assert urls(html) == [
        "https://example.com/gallery/a.jpg",
        "https://example.com/b.png",
        "https://cdn.example.org/c.gif",
    ]


def test_base_href_changes_what_relative_urls_mean():
    html = '<head><base href="https://img.example.net/x/"></head><img src="a.jpg">'
    assert urls(html) == ["https://img.example.net/x/a.jpg"]
    relative_base = '<head><base href="/static/"></head><img src="a.jpg">'
    assert urls(relative_base) == ["https://example.com/static/a.jpg"]


@pytest.mark.parametrize(
    ("srcset", "best"),
    [
        ("s.jpg 100w, l.jpg 800w, m.jpg 400w", "l.jpg"),
        ("a.jpg 1x, b.jpg 3x, c.jpg 2x", "b.jpg"),
        ("a.jpg, b.jpg 2x", "b.jpg"),  # no descriptor means 1x
        ("one.jpg", "one.jpg"),
        ("img,with,commas.jpg 10w, other.jpg 5w", "img,with,commas.jpg"),
    ],
)
def test_srcset_picks_the_largest_candidate(srcset, best):
    assert largest_candidate(parse_srcset(srcset)) == best


def test_parse_srcset_reads_widths_and_densities():
    assert parse_srcset(" a.jpg 480w , b.jpg 1.5x,c.jpg") == [
        ("a.jpg", 480.0, None),
        ("b.jpg", None, 1.5),
        ("c.jpg", None, None),
    ]


def test_img_with_srcset_stands_for_its_largest_candidate_only():
    html = '<img src="small.jpg" srcset="small.jpg 100w, big.jpg 1000w">'
    assert extract_candidates(html, PAGE) == [
        ("https://example.com/gallery/big.jpg", "img[srcset]")
    ]


@pytest.mark.parametrize("attr", ["data-src", "data-original", "data-lazy-src"])
def test_lazy_attributes_win_over_a_placeholder_src(attr):
    html = f'<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" {attr}="real.jpg">'
    assert extract_candidates(html, PAGE) == [
        ("https://example.com/gallery/real.jpg", f"img[{attr}]")
    ]


def test_lazy_srcset_wins_over_everything():
    html = '<img src="p.gif" data-srcset="a.jpg 1x, b.jpg 2x" data-src="c.jpg" srcset="d.jpg 9x">'
    assert urls(html) == ["https://example.com/gallery/b.jpg"]


def test_picture_is_one_image_the_largest_of_its_sources():
    html = """<picture>
      <source media="(min-width: 800px)" srcset="wide.webp 1600w, mid.webp 800w">
      <source srcset="narrow.jpg 600w">
      <img src="fallback.jpg" alt="">
    </picture><img src="after.jpg">"""
    assert extract_candidates(html, PAGE) == [
        ("https://example.com/gallery/wide.webp", "picture[srcset]"),
        ("https://example.com/gallery/after.jpg", "img[src]"),
    ]


def test_picture_without_srcset_falls_back_to_its_img():
    html = '<picture><source type="image/webp"><img src="only.jpg"></picture>'
    assert urls(html) == ["https://example.com/gallery/only.jpg"]


def test_links_count_only_when_they_point_at_an_image_file():
    html = """<a href="full/1.JPG"><img src="thumb/1.jpg"></a>
      <a href="page2.html">next</a><a href="mailto:x@example.com">mail</a>
      <a href="big.png?size=large#top">png with a query</a><a href="#">top</a>"""
    assert extract_candidates(html, PAGE) == [
        ("https://example.com/gallery/full/1.JPG", "a[href]"),
        ("https://example.com/gallery/thumb/1.jpg", "img[src]"),
        ("https://example.com/gallery/big.png?size=large", "a[href]"),
    ]


def test_og_image_is_found_in_the_head():
    html = """<head><meta property="og:image" content="/og.jpg">
      <meta property="og:title" content="not an image.jpg"></head><img src="body.jpg">"""
    assert extract_candidates(html, PAGE) == [
        ("https://example.com/og.jpg", "meta[og:image]"),
        ("https://example.com/gallery/body.jpg", "img[src]"),
    ]


def test_urls_come_once_in_page_order_without_fragments():
    html = '<img src="b.jpg"><img src="a.jpg#x"><img src="b.jpg"><a href="a.jpg">a</a>'
    assert urls(html) == ["https://example.com/gallery/b.jpg", "https://example.com/gallery/a.jpg"]


def test_other_schemes_and_data_uris_are_kept_for_the_manifest():
    data = "data:image/png;base64,iVBORw0KGgo="
    html = f"""<img src="javascript:alert(1)"><img src="{data}">
      <a href="ftp://files.example.com/x.jpg">ftp</a><img src="">"""
    assert urls(html) == ["javascript:alert(1)", data, "ftp://files.example.com/x.jpg"]


def test_urls_wrapped_over_lines_are_joined_like_a_browser_does():
    html = '<img src="very/long/\n\tpath.jpg">'
    assert urls(html) == ["https://example.com/gallery/very/long/path.jpg"]


def test_broken_html_and_bytes_are_fine():
    html = b'<html><body><img src="a.jpg"<div><img src=b.jpg></p></table>'
    assert urls(html)[-1] == "https://example.com/gallery/b.jpg"
    assert urls("") == []


def test_next_pages_are_rel_next_links_on_the_same_site():
    html = """<head><link rel="next" href="p2.html"></head>
      <a rel="next nofollow" href="/gallery/p2.html">again</a>
      <a rel="next" href="https://www.example.com/p3.html">www is the same site</a>
      <a rel="next" href="https://evil.example.org/p4.html">another site</a>
      <a rel="prev" href="p0.html">previous</a><a href="p9.html">no rel</a>"""
    assert next_page_urls(html, PAGE) == [
        "https://example.com/gallery/p2.html",
        "https://www.example.com/p3.html",
    ]


def test_data_uris_decode_base64_and_percent_encoding():
    png = picture(1, fmt="PNG")
    encoded = base64.b64encode(png).decode()
    assert decode_data_uri(f"data:image/png;base64,{encoded}") == png
    assert decode_data_uri("data:image/png;name=x.png;base64,aGk=") == b"hi"
    assert decode_data_uri("data:,a%20b") == b"a b"
    with pytest.raises(ValueError, match="base64"):
        decode_data_uri("data:image/png;base64,***")
    with pytest.raises(ValueError, match="malformed"):
        decode_data_uri("data:image/png;base64")


@pytest.mark.parametrize(
    ("fmt", "ext"),
    [("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp")],
)
def test_every_accepted_format_is_decoded_and_named(fmt, ext):
    check = check_image(picture(3, (40, 33), fmt), min_size=32)
    assert (check.status, check.format, check.width, check.height) == ("ok", fmt, 40, 33)
    assert check.extension == ext


def test_images_are_judged_by_their_bytes_not_their_name():
    tiff = io.BytesIO()
    Image.new("RGB", (40, 40)).save(tiff, "TIFF")
    assert check_image(tiff.getvalue(), 32).status == "not_image"
    assert check_image(b"<html><h1>Oops</h1></html>", 32).status == "not_image"
    assert check_image(picture(1, (64, 64), quality=95)[:400], 32).status == "corrupt"
    assert check_image(picture(1, (1, 1), "GIF"), 32).status == "too_small"
    assert check_image(picture(1, (31, 200)), 32).status == "too_small"
    bomb = check_image(png_header_only(30_000, 30_000), 32)
    assert bomb.status == "too_large" and "decompression bomb" in bomb.error
    assert check_image(noise_jpeg((50, 50)), 32).status == "ok"


def test_pixel_limit_between_warning_and_error_is_too_large(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 is over it, not over twice it
    with pytest.warns(Image.DecompressionBombWarning):
        check = check_image(picture(1, (40, 40), "PNG"), 32)
    assert check.status == "too_large"


def row(url: str, status: str = "ok", sha: str | None = None) -> dict:
    return manifest_row("r", "cat", "https://p/", url, status, sha256=sha)


def test_later_rows_with_the_same_bytes_are_duplicates_in_page_order():
    rows = [row("u1", sha="a"), row("u2", "http_error"), row("u3", sha="a"), row("u4", sha="b")]
    rows.append(row("u5", sha="c"))
    out = mark_duplicates(rows, known={"c"})
    assert [r["status"] for r in out] == ["ok", "http_error", "duplicate", "ok", "duplicate"]
    assert out[2]["error"] == "same bytes as u1"
    assert out[4]["error"] == "already stored by an earlier run"
    assert mark_duplicates(out, known={"c"}) == out  # idempotent


def test_the_duplicate_rule_carries_over_from_one_shard_to_the_next():
    first = {"c": ""}  # stored by an earlier run
    shard1 = [("u1", "ok", "a"), ("u2", "ok", "a"), ("u3", "timeout", None)]
    shard2 = [("u4", "ok", "b"), ("u5", "ok", "a"), ("u6", "ok", "c")]
    assert duplicates(shard1, first) == {1: "same bytes as u1"}
    assert duplicates(shard2, first) == {
        1: "same bytes as u1",
        2: "already stored by an earlier run",
    }
    assert first == {"c": "", "a": "u1", "b": "u4"}


def test_manifest_row_has_every_column_and_refuses_unknown_ones():
    r = row("u")
    assert r["status"] == "ok" and r["path"] is None and "fetched_at" in r
    with pytest.raises(KeyError, match="colour"):
        manifest_row("r", "cat", "p", "u", "ok", colour="red")


def test_downloads_take_hosts_in_turn():
    order = ["http://a/1", "http://a/2", "http://a/3", "http://b/1", "http://c/1", "http://b/2"]
    assert interleave_by_host(order) == [0, 3, 4, 1, 5, 2]


def test_one_parse_gives_capped_candidates_and_the_next_page():
    imgs = "".join(f'<img src="p{i}.jpg">' for i in range(30))
    html = f'<link rel="next" href="page2.html">{imgs}<img src="p0.jpg">'
    page = parse_page(html, PAGE, max_candidates=10)
    assert [c.url for c in page.candidates] == [
        f"https://example.com/gallery/p{i}.jpg" for i in range(10)
    ]
    assert page.dropped == 20  # distinct URLs past the cap; the repeated p0.jpg is not one
    assert page.next_urls == ["https://example.com/gallery/page2.html"]
    assert parse_page(html, PAGE).dropped == 0 and len(parse_page(html, PAGE).candidates) == 30


# --- every form a browser or a link preview shows (issue 20) ----------------------------------

G = "https://example.com/gallery/"


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (
            '<meta name="twitter:image" content="/tw.jpg">',
            [("https://example.com/tw.jpg", "meta[twitter:image]")],
        ),
        (
            '<meta property="twitter:image:src" content="tw.png">',
            [(G + "tw.png", "meta[twitter:image]")],
        ),
        ('<meta name="og:image" content="og.jpg">', [(G + "og.jpg", "meta[og:image]")]),
        ('<link rel="image_src" href="main.jpg">', [(G + "main.jpg", "link[image_src]")]),
        ('<link rel="stylesheet" href="site.css"><link rel="icon" href="i.png">', []),
        (
            '<amp-img src="amp.jpg" layout="responsive"></amp-img>',
            [(G + "amp.jpg", "amp-img[src]")],
        ),
        (
            '<amp-img src="s.jpg" srcset="s.jpg 320w, l.jpg 1280w"></amp-img>',
            [(G + "l.jpg", "amp-img[srcset]")],
        ),
        (
            '<video poster="poster.jpg"><source src="clip.mp4"></video>',
            [(G + "poster.jpg", "video[poster]")],
        ),
        ('<svg><image href="drawn.png" /></svg>', [(G + "drawn.png", "svg:image[href]")]),
        ('<svg><image xlink:href="old.png" /></svg>', [(G + "old.png", "svg:image[xlink:href]")]),
        (
            '<img src="p.gif" data-lazy-srcset="a.jpg 1x, b.jpg 2x">',
            [(G + "b.jpg", "img[data-lazy-srcset]")],
        ),
        ('<img src="p.gif" data-lazy="slick.jpg">', [(G + "slick.jpg", "img[data-lazy]")]),
        ('<img src="p.gif" data-echo="echo.jpg">', [(G + "echo.jpg", "img[data-echo]")]),
        ('<div data-bg="bg.jpg"></div>', [(G + "bg.jpg", "[data-bg]")]),
        ('<div data-bg-hidpi="bg@2x.jpg"></div>', [(G + "bg@2x.jpg", "[data-bg-hidpi]")]),
        ('<section data-background="sec.jpg"></section>', [(G + "sec.jpg", "[data-background]")]),
        (
            '<div data-background-image="lozad.jpg"></div>',
            [(G + "lozad.jpg", "[data-background-image]")],
        ),
        ("<div data-bg=\"url('quoted.jpg')\"></div>", [(G + "quoted.jpg", "[data-bg]")]),
        (
            '<div data-bg-multi="url(m1.jpg), url(m2.jpg)"></div>',
            [(G + "m1.jpg", "[data-bg-multi]"), (G + "m2.jpg", "[data-bg-multi]")],
        ),
        (
            '<div data-bgset="s.jpg 1x, m.jpg 2x [(max-width: 600px)] | l.jpg 3x"></div>',
            [(G + "l.jpg", "[data-bgset]")],
        ),
        (
            '<noscript><img src="fallback.jpg"></noscript>',
            [(G + "fallback.jpg", "noscript>img[src]")],
        ),
        ('<div style="background-image: url(s.jpg)"></div>', [(G + "s.jpg", "[style]")]),
        (
            "<div style=\"color: red; background: #fff url( 's2.jpg' ) no-repeat\"></div>",
            [(G + "s2.jpg", "[style]")],
        ),
        (
            '<div style="background-image: url(&quot;s3.jpg&quot;)"></div>',
            [(G + "s3.jpg", "[style]")],
        ),
        ('<div style="list-style-image: url(no.jpg); border-image: url(no2.jpg)"></div>', []),
        ("<style>.hero { background-image: url(hero.jpg) }</style>", [(G + "hero.jpg", "<style>")]),
        (
            '<style>.a{background:url("q.jpg") center}.b{content:url(no.jpg)}</style>',
            [(G + "q.jpg", "<style>")],
        ),
        ("<style>/* background: url(c.jpg) */ p{color:red}</style>", []),
    ],
)
def test_each_form_has_its_own_found_in(html, expected):
    assert extract_candidates(html, PAGE) == expected


def test_url_in_css_with_and_without_quotes_and_spaces():
    css = """.a{background-image:url(a.jpg)} .b{background-image: url( "b b.jpg" )}
      .c{background:url('c.jpg'),url(d.jpg)} .e{background: url(data:image/png;base64,AAA=)}"""
    assert urls(f"<style>{css}</style>") == [
        G + "a.jpg", G + "b b.jpg", G + "c.jpg", G + "d.jpg",
        "data:image/png;base64,AAA=",
    ]  # fmt: skip


def test_image_set_takes_the_largest():
    html = """<div style="background-image: image-set(url(one.jpg) 1x, url('two.jpg') 2x)"></div>
      <div style="background-image: -webkit-image-set('a.png' 1x, 'b.png' 3x, 'c.png' 2x)"></div>
      <div style="background: image-set(url(lo.jpg) 96dpi, url(hi.jpg) 2dppx), url(also.jpg)">
      </div><style>.x{background:image-set("z1.avif" type("image/avif") 1x, "z2.avif" 2x)}
      </style>"""
    assert urls(html) == [
        G + "two.jpg", G + "b.png", G + "hi.jpg", G + "also.jpg", G + "z2.avif"
    ]  # fmt: skip


JSON_LD_FORMS = [
    ('{"@type": "Article", "image": "str.jpg"}', [(G + "str.jpg", "json-ld[image]")]),
    (
        '{"image": {"@type": "ImageObject", "url": "obj.jpg", "width": 800}}',
        [(G + "obj.jpg", "json-ld[image]")],
    ),
    (
        '{"image": ["l1.jpg", {"@type": "ImageObject", "contentUrl": "l2.jpg"}]}',
        [(G + "l1.jpg", "json-ld[image]"), (G + "l2.jpg", "json-ld[image]")],
    ),
    (
        '{"@type": "VideoObject", "thumbnailUrl": "/th.jpg"}',
        [("https://example.com/th.jpg", "json-ld[thumbnailUrl]")],
    ),
    (
        '{"@type": "ImageObject", "contentUrl": "https://cdn.example.org/c.jpg"}',
        [("https://cdn.example.org/c.jpg", "json-ld[contentUrl]")],
    ),
    (
        '{"@context": "https://schema.org", "@graph": [{"@type": "WebPage", "name": "x"},'
        ' {"@type": "Person", "image": {"url": "face.jpg"}}, {"thumbnailUrl": ["t.jpg"]}]}',
        [(G + "face.jpg", "json-ld[image]"), (G + "t.jpg", "json-ld[thumbnailUrl]")],
    ),
    (
        '[{"image": "arr1.jpg"}, {"image": "arr2.jpg"}]',
        [(G + "arr1.jpg", "json-ld[image]"), (G + "arr2.jpg", "json-ld[image]")],
    ),
    (
        '{"@type": "Article", "author": {"image": "nested.jpg"}}',
        [(G + "nested.jpg", "json-ld[image]")],
    ),
    ('{"image": 42, "thumbnailUrl": null, "contentUrl": ""}', []),
]


@pytest.mark.parametrize(("json_ld", "expected"), JSON_LD_FORMS)
def test_json_ld_images_as_string_object_list_and_graph(json_ld, expected):
    html = f'<script type="application/ld+json">{json_ld}</script>'
    assert extract_candidates(html, PAGE) == expected


@pytest.mark.parametrize(
    "broken",
    ['{"image": "a.jpg"', "not json at all", "", '{"image": "b.jpg",}', "[" * 5000 + "]" * 5000],
)
def test_broken_json_ld_is_ignored_and_the_rest_of_the_page_still_counts(broken):
    html = f"""<script type="application/ld+json">{broken}</script>
      <script type="application/ld+json">{{"image": "good.jpg"}}</script><img src="img.jpg">"""
    assert urls(html) == [G + "good.jpg", G + "img.jpg"]


def test_nothing_but_json_ld_is_read_from_scripts():
    html = """<script>var a = {"image": "js.jpg"}; document.write('<img src="w.jpg">')</script>
      <script type="text/template"><img src="tpl.jpg"></script>
      <script type="application/json">{"image": "plain-json.jpg"}</script>
      <script type="application/ld+json; charset=utf-8">{"image": "ld.jpg"}</script>"""
    assert urls(html) == [G + "ld.jpg"]


def test_noscript_fallbacks_are_kept_and_a_lazy_image_counts_once():
    html = """<img data-src="lazy.jpg" src="placeholder.gif" class="lazyload">
      <noscript><img src="lazy.jpg"><img src="only-here.jpg"></noscript>"""
    assert extract_candidates(html, PAGE) == [
        (G + "lazy.jpg", "img[data-src]"),
        (G + "only-here.jpg", "noscript>img[src]"),
    ]


def test_relative_urls_of_every_form_resolve_against_base_href():
    html = """<head><meta property="og:image" content="og.jpg">
      <base href="https://static.example.net/assets/">
      <meta name="twitter:image" content="../tw.jpg"><link rel="image_src" href="/root.jpg">
      <script type="application/ld+json">{"image": "ld.jpg"}</script>
      <style>.h{background:url(css/h.jpg)}</style></head>
      <body><amp-img src="amp.jpg"></amp-img><video poster="p.jpg"></video>
      <svg><image href="s.png"/></svg><div data-bg="bg.jpg" style="background:url('st.jpg')"></div>
      <noscript><img src="ns.jpg"></noscript></body>"""
    b = "https://static.example.net/assets/"
    assert urls(html) == [
        b + "og.jpg", "https://static.example.net/tw.jpg", "https://static.example.net/root.jpg",
        b + "ld.jpg", b + "css/h.jpg", b + "amp.jpg", b + "p.jpg", b + "s.png", b + "st.jpg",
        b + "bg.jpg", b + "ns.jpg",
    ]  # fmt: skip


ALL_FORMS = """<!doctype html><html><head>
<meta property="og:image" content="/shared.jpg">
<meta name="twitter:image" content="/shared.jpg"><meta name="twitter:image:src" content="tw.jpg">
<link rel="image_src" href="/shared.jpg"><link rel="image_src" href="link.jpg">
<script type="application/ld+json">{"@graph": [{"image": ["/shared.jpg", "ld.jpg"]},
  {"thumbnailUrl": "thumb.jpg"}, {"contentUrl": {"url": "content.jpg"}}]}</script>
<style>.hero{background-image: image-set(url(hero.jpg) 1x, url(hero-2x.jpg) 2x)}</style>
</head><body>
<img src="/shared.jpg"><amp-img srcset="amp.jpg 2x"></amp-img><video poster="poster.jpg"></video>
<svg><image xlink:href="svg.png"/></svg><img src="p.gif" data-srcset="lazy.jpg 1x">
<div data-bg="ld.jpg"></div><div data-background="bg.jpg"></div>
<noscript><img src="noscript.jpg"></noscript><div style="background: url(style.jpg)"></div>
<picture><source srcset="pic.webp 2x"><img src="pic.jpg"></picture><a href="big.png">big</a>
</body></html>"""


def test_a_page_with_every_form_gives_each_url_once_with_the_first_found_in():
    got = extract_candidates(ALL_FORMS, PAGE)
    assert [
        (c.url.removeprefix(G).removeprefix("https://example.com/"), c.found_in) for c in got
    ] == [
        ("shared.jpg", "meta[og:image]"),
        ("tw.jpg", "meta[twitter:image]"),
        ("link.jpg", "link[image_src]"),
        ("ld.jpg", "json-ld[image]"),
        ("thumb.jpg", "json-ld[thumbnailUrl]"),
        ("content.jpg", "json-ld[contentUrl]"),
        ("hero-2x.jpg", "<style>"),
        ("amp.jpg", "amp-img[srcset]"),
        ("poster.jpg", "video[poster]"),
        ("svg.png", "svg:image[xlink:href]"),
        ("lazy.jpg", "img[data-srcset]"),
        ("bg.jpg", "[data-background]"),
        ("noscript.jpg", "noscript>img[src]"),
        ("style.jpg", "[style]"),
        ("pic.webp", "picture[srcset]"),
        ("big.png", "a[href]"),
    ]


def test_charset_of_byte_pages_is_honoured():
    latin = '<meta charset="iso-8859-1"><img src="caf\xe9.jpg">'.encode("latin-1")
    assert urls(latin) == [G + "café.jpg"]
    assert urls('<img src="café.jpg">'.encode()) == [G + "café.jpg"]


def test_hostile_css_costs_one_pass():
    """Unclosed parentheses after every declaration: linear, not quadratic (a bounded run)."""
    css = "p{background:url(" * 20_000 + "a.jpg)"
    assert len(urls(f'<style>{css}</style><img src="after.jpg">')) >= 1
