"""Property-based tests (Hypothesis) of the scanners of untrusted text: CSS, srcset, data-bgset
and JSON-LD never raise, keep their caps, and cost work (as their Meter counts it) that grows
linearly: the same text repeated 4x as often costs at most ~4x, where a square would cost 16x."""

import json
import re
import time

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasks.scrape.budget import Meter
from tasks.scrape.css import background_urls, css_urls, strip_comments
from tasks.scrape.jsonld import json_ld_urls
from tasks.scrape.srcset import bgset_as_srcset, largest_candidate, parse_srcset

CSS_TOKENS = [
    *("url(", "URL(", "image-set(", "-webkit-image-set(", "type(", "background:"),
    *("background-image :", "/*", "*/", "(", ")", '"', "'", " ", "\n", ",", ";", "{", "}"),
    *("1", "2.5", ".", "x", "dppx", "dpi", "a.jpg", "\\", "b"),
]
SRCSET_TOKENS = [" ", ",", "a.jpg", "b,c.png", "1x", "100w", "(", ")", "2.5x", "w", "\t", "x"]
BGSET_TOKENS = [*SRCSET_TOKENS, "[", "]", "|", "(max-width: 600px)"]


def text_of(tokens: list[str], max_size: int = 40) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(tokens), max_size=max_size).map("".join)


def work(scan, text: str) -> int:
    meter = Meter()
    scan(text, meter=meter)
    return meter.spent


def grows_linearly(scan, unit: str, times: int = 50) -> None:
    """The work for `unit` repeated 4n times is at most 4.5x the work for n times (+ slack)."""
    small, large = work(scan, unit * times), work(scan, unit * times * 4)
    assert large <= 4.5 * small + 64, (unit, small, large)


def css_both(text: str, meter: Meter) -> None:
    background_urls(text, meter)
    css_urls(text, meter)


# --- CSS ----------------------------------------------------------------------------------------


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(text_of(CSS_TOKENS, 80))
def test_css_never_raises_and_gives_nonblank_urls(css):
    for urls in (background_urls(css), css_urls(css)):
        assert all(isinstance(u, str) and u.strip() for u in urls)


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(text_of(CSS_TOKENS, 12).filter(bool))
@example("url(/* ")  # the attacks measured on main (issue 23): 35 s, 11.8 s, 2.7 s
@example('image-set("a" 1')
@example("url( ")
@example("background:url(")
@example("p{background:url(")
def test_css_work_grows_linearly(unit):
    grows_linearly(css_both, unit)


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(text_of(CSS_TOKENS, 60))
def test_comments_are_cut_as_css_does_an_unclosed_one_to_the_end(css):
    out, i = [], 0  # the oracle: one character at a time
    while i < len(css):
        if css.startswith("/*", i):
            if (end := css.find("*/", i + 2)) < 0:
                break
            i = end + 2
        else:
            out.append(css[i])
            i += 1
    assert strip_comments(css) == "".join(out)


def test_the_issue_attacks_cost_a_bounded_multiple_of_their_length():
    """Counted work per character stays under a constant for the attacks measured on main."""
    for prefix, unit, n in (
        ("url(", "/* ", 40_000),
        ('a{background:image-set("a" ', "1", 16_000),
        ("a{background:url(", " ", 32_000),
    ):
        css = prefix + unit * n
        assert work(css_both, css) <= 12 * len(css), prefix


def test_the_issue_attacks_take_cpu_in_proportion_to_their_size():
    """A ratio, not a threshold: 4x the hostile text costs far less than the 16x of a square."""

    def cpu(css: str) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            background_urls(css)
            best = min(best, time.process_time() - start)
        return best

    for prefix, unit in (("<style>url(", "/* "), ("a{background:url(", " ")):
        small, large = cpu(prefix + unit * 50_000), cpu(prefix + unit * 200_000)
        assert large <= 10 * max(small, 1e-4), (prefix, small, large)


# --- srcset and data-bgset ----------------------------------------------------------------------


def old_parse_srcset(srcset: str) -> list:
    """parse_srcset before issue 23 (a character loop, linear but slow): the oracle."""
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
            start, depth = i, 0
            while i < n and (srcset[i] != "," or depth):
                depth += {"(": 1, ")": -1}.get(srcset[i], 0)
                i += 1
            descriptors = srcset[start:i]
        if url:
            out.append((url, descriptors))
    return out


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(text_of(SRCSET_TOKENS, 60))
def test_srcset_reads_as_the_character_loop_did(srcset):
    found = parse_srcset(srcset)
    assert [u for u, _, _ in found] == [u for u, _ in old_parse_srcset(srcset)]
    assert all(url and not any(c.isspace() for c in url) for url, _, _ in found)
    best = largest_candidate(found)
    assert best is None if not found else best in {u for u, _, _ in found}


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(text_of(SRCSET_TOKENS, 12).filter(bool))
@example("(")  # an unclosed parenthesis swallows the commas after it
@example(" ,")
def test_srcset_work_grows_linearly(unit):
    grows_linearly(parse_srcset, unit)


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(text_of(BGSET_TOKENS, 12).filter(bool))
@example("[")  # the old bracket regex scanned to the end from every unclosed "["
def test_bgset_work_grows_linearly(unit):
    grows_linearly(lambda text, meter: parse_srcset(bgset_as_srcset(text, meter), meter), unit)


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(text_of(BGSET_TOKENS, 40))
def test_bgset_reads_as_the_old_regex_did(value):
    assert bgset_as_srcset(value) == re.sub(r"\[[^\]]*\]|\|", ",", value)


# --- JSON-LD ------------------------------------------------------------------------------------

KEYS = ["image", "thumbnailUrl", "contentUrl", "url", "@graph", "author", "name"]
json_values = st.recursive(
    st.none() | st.integers(-5, 5) | st.sampled_from(["a.jpg", "b.png", "", " ", "c.gif"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=25,
)


def tree_walk(data: object) -> list[tuple[str, str]]:
    """The JSON-LD walk as it was before issue 23 (a whole tree, depth first): the oracle."""

    def images(value: object) -> list[str]:
        if isinstance(value, str):
            return [value] if value.strip() else []
        if isinstance(value, dict):
            url = value.get("contentUrl") or value.get("url")
            return [url] if isinstance(url, str) and url.strip() else []
        if isinstance(value, list):
            return [u for v in value if not isinstance(v, list) for u in images(v)]
        return []

    found, stack = [], [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in ("image", "thumbnailUrl", "contentUrl"):
                found += [(url, key) for url in images(node.get(key))]
        children = list(node.values()) if isinstance(node, dict) else node
        if isinstance(children, list):
            stack += [c for c in reversed(children) if isinstance(c, dict | list)]
    return found


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(json_values)
def test_json_ld_gives_what_the_tree_walk_gave_in_the_same_order(value):
    assert json_ld_urls(json.dumps(value)) == tree_walk(value)


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(json_values, st.integers(0, 6))
def test_json_ld_keeps_its_limit(value, limit):
    found = json_ld_urls(json.dumps(value), limit)
    assert len(found) <= limit
    assert set(found) <= set(tree_walk(value))


@settings(deadline=None)  # no wall-clock limit: work is counted instead
@given(st.text(max_size=200))
@example("[" * 5000 + "]" * 5000)
@example('{"image": 1' + "0" * 5000 + "}")  # int() of over 4300 digits raises ValueError
def test_json_ld_never_raises(text):
    assert isinstance(json_ld_urls(text), list)


@settings(max_examples=30, deadline=None)
@given(json_values)
def test_json_ld_work_grows_linearly(value):
    unit = json.dumps(value)
    grows_linearly(lambda text, meter: json_ld_urls(f"[{text[:-1]}]", meter=meter), unit + ",")
