"""Frozen copy of tasks/scrape/css.py before issue 23 (backtracking regexes, a comment regex
that rescans to the end from every unclosed `/*`): the baseline bench/bench_hostile.py
measures the linear scanners against. Not used by pixelpipe itself."""

from __future__ import annotations

import re

_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)"'\s]*))\s*\)""", re.I)
_CSS_IMAGE = re.compile(r"(?:-webkit-)?image-set\(|url\(", re.I)
_BACKGROUND = re.compile(r"(?<![\w-])background(?:-image)?\s*:", re.I)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_RESOLUTION = re.compile(r"([\d.]+)\s*(x|dppx|dpi|dpcm)\b", re.I)
_PER_DPPX = {"x": 1.0, "dppx": 1.0, "dpi": 1 / 96, "dpcm": 2.54 / 96}


def _close_paren(text: str, i: int) -> int:
    """Index just past the parenthesis that closes the one opened before `i` (quotes kept)."""
    depth, quote = 1, ""
    while i < len(text) and depth:
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        else:
            depth += {"(": 1, ")": -1}.get(ch, 0)
        i += 1
    return i


def _declaration_value(css: str, start: int) -> str:
    """A declaration's value from `start` to its `;` or `}` (not one inside parentheses)."""
    i = start
    while i < len(css) and css[i] not in ";}":
        i = _close_paren(css, i + 1) if css[i] == "(" else i + 1
    return css[start:i]


def _first(match: re.Match) -> str:
    return next((g for g in match.groups() if g is not None), "")


def _image_set_best(inner: str) -> str | None:
    """The highest-resolution image of an image-set()'s inside (1x when none is given)."""
    best, best_x, i, start, items = None, -1.0, 0, 0, []
    while i <= len(inner):
        if i == len(inner) or inner[i] == ",":
            items.append(inner[start:i])
            start = i + 1
        elif inner[i] == "(":
            i = _close_paren(inner, i + 1) - 1
        i += 1
    for item in items:
        m = _URL.search(item) or re.search(r"""["']([^"']*)["']""", item)
        if not m:
            continue
        r = _RESOLUTION.search(item[m.end() :])
        x = float(r.group(1)) * _PER_DPPX[r.group(2).lower()] if r else 1.0
        if x > best_x:
            best, best_x = _first(m), x
    return best


def css_urls(value: str) -> list[str]:
    """The images of a CSS value, in order: each url(), and the largest of each image-set().
    Each scan resumes where the last ended, so hostile CSS costs one pass, not a square."""
    out, pos = [], 0
    while m := _CSS_IMAGE.search(value, pos):
        end = _close_paren(value, m.end())
        if m.group().lower() != "url(":
            url = _image_set_best(value[m.end() : end - 1])
        else:
            url = (
                next((g for g in u.groups() if g), None)
                if (u := _URL.match(value, m.start()))
                else None
            )
        out += [url] if url and url.strip() else []
        pos = end
    return out


def background_urls(css: str) -> list[str]:
    """The images of every background / background-image declaration in a CSS text."""
    if "url(" not in (lower := css.lower()) and "image-set(" not in lower:
        return []
    css, out, pos = _CSS_COMMENT.sub("", css), [], 0
    while m := _BACKGROUND.search(css, pos):
        value = _declaration_value(css, m.end())
        out += css_urls(value)
        pos = m.end() + len(value)
    return out
