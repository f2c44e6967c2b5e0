"""srcset (and lazysizes' data-bgset): candidates and the largest of them, by linear scanners
(each step skips a run with a one-quantifier regex or str.find, then moves past it)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from tasks.scrape.budget import Meter

_SEPARATORS = re.compile(r"[\s,]*")
_URL = re.compile(r"\S*")
_DESCRIPTOR = re.compile(r"[^,()]*")


def parse_srcset(
    srcset: str, meter: Meter | None = None
) -> list[tuple[str, float | None, float | None]]:
    """`(url, width, density)` for each candidate of a srcset, per the HTML spec's rules:
    a URL runs to the next whitespace (it may contain commas); descriptors run to a comma
    outside parentheses."""
    meter = meter if meter is not None else Meter()
    out, i, n = [], 0, len(srcset)
    while i < n:
        start = _SEPARATORS.match(srcset, i).end()
        i = _URL.match(srcset, start).end()
        url, descriptors = srcset[start:i], ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start, depth = i, 0
            while (i := _DESCRIPTOR.match(srcset, i).end()) < n:
                char = srcset[i]
                if char == "," and not depth:
                    break
                depth += {"(": 1, ")": -1}.get(char, 0)
                i += 1
            descriptors = srcset[start:i]
        meter.spend(i - start + 1)
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


def bgset_as_srcset(value: str, meter: Meter | None = None) -> str:
    """A data-bgset (`a.jpg 1x [(media)] | b.jpg 2x`) as a srcset: media queries dropped and
    `|` read as `,`. An unclosed `[` is kept as text."""
    meter = meter if meter is not None else Meter()
    meter.spend(len(value))
    parts, pos = [], 0
    while (start := value.find("[", pos)) >= 0 and (end := value.find("]", start + 1)) >= 0:
        parts += [value[pos:start], ","]
        pos = end + 1
    parts.append(value[pos:])
    return "".join(parts).replace("|", ",")
