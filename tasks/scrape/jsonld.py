"""JSON-LD images (schema.org image, thumbnailUrl, contentUrl), read while the JSON is decoded:
no tree is kept, and decoding stops once enough images are found (pure functions)."""

from __future__ import annotations

import json

from tasks.scrape.budget import Meter

JSON_LD_KEYS = ("image", "thumbnailUrl", "contentUrl")


class _Enough(Exception):
    """Internal: the block gave as many images as were asked for; stop decoding."""


_OPAQUE = object()  # what a non-empty object without images becomes: truthy, holds nothing


class _Node:
    """What is kept of a decoded object: its URL as an ImageObject, and its images (pairs) and
    image-bearing children (nodes), in the order the old tree walk visited them."""

    __slots__ = ("parts", "url")

    def __init__(self, url: str | None, parts: list) -> None:
        self.url, self.parts = url, parts


def json_ld_urls(
    text: str, limit: int | None = None, meter: Meter | None = None
) -> list[tuple[str, str]]:
    """(url, key) for the images of a JSON-LD block, in document order, @graph and nested
    objects included: a string, an ImageObject (its contentUrl or url), or a list of either;
    at most `limit`. Malformed JSON gives nothing.

    Each object is judged as the decoder closes it (json's object_hook) and replaced by a
    small node (or a shared marker when it holds no image): a block of a million objects
    costs their text, not their tree. Once `limit` images are found decoding stops, and
    those come in the order their objects closed.
    """
    meter = meter if meter is not None else Meter()
    meter.spend(len(text))  # json's C decoder reads each character once
    found: list[tuple[str, str]] = []

    def judge(obj: dict) -> _Node | object:
        meter.spend(len(obj))
        if not obj:
            return None  # falsy, as {} was: `{"contentUrl": {}, "url": "a.jpg"}` is a.jpg
        own = [(url, key) for key in JSON_LD_KEYS for url in _images(obj.get(key))]
        found.extend(own)
        if limit is not None and len(found) >= limit:
            raise _Enough
        url = obj.get("contentUrl") or obj.get("url")
        url = url if isinstance(url, str) and url.strip() else None  # as an ImageObject
        parts = own + [n for n in _nodes(list(obj.values()), meter) if n.parts]
        return _Node(url, parts) if url or parts else _OPAQUE

    try:
        root = json.loads(text, object_hook=judge)
    except _Enough:
        return found[:limit]
    except (ValueError, RecursionError):  # malformed, too deep, or a number too long
        return []
    return _flatten(_nodes([root], meter))


def _images(value: object) -> list[str]:
    """The images a key's value names: nested objects are already nodes (or None)."""
    if isinstance(value, list):
        return [u for v in value if not isinstance(v, list) for u in _images(v)]
    url = value.url if isinstance(value, _Node) else value
    return [url] if isinstance(url, str) and url.strip() else []


def _nodes(values: list, meter: Meter) -> list[_Node]:
    """The nodes among `values` and inside their lists, in order (each list is walked once:
    by the object that holds it)."""
    out: list[_Node] = []
    stack = [iter(values)]
    while stack:
        for value in stack[-1]:
            meter.spend(1)
            if isinstance(value, _Node):
                out.append(value)
            elif isinstance(value, list):
                stack.append(iter(value))
                break
        else:
            stack.pop()
    return out


def _flatten(parts: list) -> list[tuple[str, str]]:
    """The images of nodes and pairs, depth first, without recursion."""
    out: list[tuple[str, str]] = []
    stack = [iter(parts)]
    while stack:
        for part in stack[-1]:
            if isinstance(part, _Node):
                stack.append(iter(part.parts))
                break
            out.append(part)
        else:
            stack.pop()
    return out
