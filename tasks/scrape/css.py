"""CSS images: url() and image-set() of background / background-image declarations, found by
linear scanners over CSS text (never over HTML; pure functions).

Every loop moves forward: each step either skips a run with a regex that has nothing after
its one quantifier (so it cannot backtrack) or finds a literal with str.find, and resumes
after what it examined. The Meter counts the characters examined, which the property tests
check grows linearly with the input.
"""

from __future__ import annotations

import re

from tasks.scrape.budget import Meter

_BACKGROUND = re.compile(r"(?<![\w-])background(?:-image)?\s*:", re.I)  # literal, then spaces
_CSS_IMAGE = re.compile(r"(?:-webkit-)?image-set\(|url\(", re.I)  # literals only
_URL_OPEN = re.compile(r"url\(", re.I)
_QUOTED = re.compile(r"""["']([^"']*)["']""")  # each run ends at the next quote: linear
_SPACES = re.compile(r"\s*")
_UNQUOTED = re.compile(r"""[^)"'\s]*""")
_PAREN = re.compile(r"""[()"']""")
_STOP = re.compile(r"[(;}]")
_COMMA_OR_PAREN = re.compile(r"[,(]")
_NUMBER = re.compile(r"[\d.]+")
_UNIT = re.compile(r"(x|dppx|dpi|dpcm)\b", re.I)  # at most 4 letters and a boundary
_PER_DPPX = {"x": 1.0, "dppx": 1.0, "dpi": 1 / 96, "dpcm": 2.54 / 96}


def _run(pattern: re.Pattern, text: str, i: int, meter: Meter) -> int:
    """The end of the run `pattern` matches at `i` (a single quantified class: no backtracking)."""
    end = pattern.match(text, i).end()
    meter.spend(end - i + 1)
    return end


def _find(text: str, what: str, i: int, meter: Meter) -> int:
    """str.find, counted: the characters up to the hit (or the end) were examined."""
    at = text.find(what, i)
    meter.spend((len(text) if at < 0 else at + len(what)) - i + 1)
    return at


def _search(pattern: re.Pattern, text: str, i: int, meter: Meter) -> re.Match | None:
    m = pattern.search(text, i)
    meter.spend((m.end() if m else len(text)) - i + 1)
    return m


def _close_paren(text: str, i: int, meter: Meter) -> int:
    """Index just past the parenthesis that closes the one opened before `i` (quoted text is
    skipped whole; an unclosed one runs to the end)."""
    depth = 1
    while depth:
        if (m := _search(_PAREN, text, i, meter)) is None:
            return len(text)
        i = m.end()
        if (ch := m.group()) in "\"'":
            if (close := _find(text, ch, i, meter)) < 0:
                return len(text)
            i = close + 1
        else:
            depth += 1 if ch == "(" else -1
    return i


def _declaration_value(css: str, start: int, meter: Meter) -> str:
    """A declaration's value from `start` to its `;` or `}` (not one inside parentheses)."""
    i = start
    while (m := _search(_STOP, css, i, meter)) is not None and m.group() == "(":
        i = _close_paren(css, m.end(), meter)
    return css[start : m.start() if m else len(css)]


def _url_at(text: str, i: int, meter: Meter) -> tuple[str | None, int]:
    """The URL of a `url(` whose parenthesis ends just before `i` (None when it is malformed:
    not a string or a bare word followed by `)`), and where the scan stopped."""
    j = _run(_SPACES, text, i, meter)
    if j < len(text) and text[j] in "\"'":
        if (close := _find(text, text[j], j + 1, meter)) < 0:
            return None, len(text)
        url, k = text[j + 1 : close], close + 1
    else:
        k = _run(_UNQUOTED, text, j, meter)
        url = text[j:k]
    k = _run(_SPACES, text, k, meter)
    return (url, k + 1) if k < len(text) and text[k] == ")" else (None, k)


def _first_url(item: str, meter: Meter) -> tuple[str | None, int]:
    """The first well-formed url() of an image-set() item, else its first quoted string."""
    pos = 0
    while (m := _search(_URL_OPEN, item, pos, meter)) is not None:
        url, pos = _url_at(item, m.end(), meter)
        if url is not None:
            return url, pos
        # A failed url( stopped at a quote or a stray character: one that starts inside the
        # run it examined would fail at the same place, so the search resumes after it.
    if (q := _search(_QUOTED, item, 0, meter)) is not None:
        return q.group(1), q.end()
    return None, 0


def _resolution(item: str, i: int, meter: Meter) -> float:
    """The density of the first `<number><unit>` after `i` (1x when there is none)."""
    while (m := _search(_NUMBER, item, i, meter)) is not None:
        i = m.end()
        if unit := _UNIT.match(item, _run(_SPACES, item, i, meter)):
            try:
                return float(m.group()) * _PER_DPPX[unit.group(1).lower()]
            except ValueError:  # "1.2.3x"
                return 1.0
    return 1.0


def _image_set_best(inner: str, meter: Meter) -> str | None:
    """The highest-resolution image of an image-set()'s inside (1x when none is given)."""
    best, best_x, start, i = None, -1.0, 0, 0
    while True:
        m = _search(_COMMA_OR_PAREN, inner, i, meter)
        if m is not None and m.group() == "(":
            i = _close_paren(inner, m.end(), meter)
            continue
        end = m.start() if m else len(inner)
        url, after = _first_url(item := inner[start:end], meter)
        if url is not None and (x := _resolution(item, after, meter)) > best_x:
            best, best_x = url, x
        if m is None:
            return best
        start = i = m.end()


def css_urls(value: str, meter: Meter | None = None) -> list[str]:
    """The images of a CSS value, in order: each url(), and the largest of each image-set().
    Each scan resumes where the last ended, so hostile CSS costs one pass, not a square."""
    meter = meter if meter is not None else Meter()
    out, pos = [], 0
    while m := _search(_CSS_IMAGE, value, pos, meter):
        end = _close_paren(value, m.end(), meter)
        if m.group().lower() != "url(":
            url = _image_set_best(value[m.end() : end - 1], meter)
        else:
            url = _url_at(value, m.end(), meter)[0]
        out += [url] if url and url.strip() else []
        pos = end
    return out


def strip_comments(css: str, meter: Meter | None = None) -> str:
    """CSS without its /* comments */; an unclosed one runs to the end (CSS Syntax 4.3.2)."""
    meter = meter if meter is not None else Meter()
    parts, pos = [], 0
    while (start := _find(css, "/*", pos, meter)) >= 0:
        parts.append(css[pos:start])
        if (end := _find(css, "*/", start + 2, meter)) < 0:
            return "".join(parts)
        pos = end + 2
    parts.append(css[pos:])
    return "".join(parts)


def background_urls(css: str, meter: Meter | None = None) -> list[str]:
    """The images of every background / background-image declaration in a CSS text."""
    meter = meter if meter is not None else Meter()
    meter.spend(len(css))
    if "url(" not in (lower := css.lower()) and "image-set(" not in lower:
        return []
    css, out, pos = strip_comments(css, meter), [], 0
    while m := _search(_BACKGROUND, css, pos, meter):
        value = _declaration_value(css, m.end(), meter)
        out += css_urls(value, meter)
        pos = m.end() + len(value)
    return out
