"""The one door for image files pixelpipe did not make: accepted formats only, the pixel budget
judged from the headers before anything is decoded, and a cap on a JPEG's scans (its CPU)."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from storage.errors import PixelpipeError
from storage.files import MAX_PIXELS

# The Pillow formats behind storage.files.IMAGE_EXTENSIONS (a test keeps the two in step).
# Image.open tries no other plugin, so a file named .jpg cannot reach, say, a PSD or EPS
# decoder. "JPEG" also opens what Pillow names MPO (many phone cameras' JPEGs).
DECODE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "DIB", "TIFF", "PPM", "ICO")
# A JPEG's decoding CPU grows with its scans x its pixels: each scan of a progressive JPEG
# passes over every block of its components, even when the scan is 31 bytes of end-of-band
# runs. libjpeg's progressive script has 10 scans (6 for gray), a baseline file 1-4. 100 allows
# 10x that; a 50 MP file at the cap decodes in a few seconds (docs/security.md).
MAX_JPEG_SCANS = 100
# Segments (markers) a JPEG may have: a photo has a few dozen (an ICC profile split in up to
# 255). Pillow reads the segments before the first scan in Python, ~1.6 us each: 2.5 million
# empty ones (10 MB) cost 4 s before libjpeg starts. The walk below stops here too.
MAX_JPEG_SEGMENTS = 4096

_JPEG, _ICO, _PNG = b"\xff\xd8\xff", b"\x00\x00\x01\x00", b"\x89PNG\r\n\x1a\n"
_ANY_MARKER = re.compile(rb"\xff[^\x00\xff]")  # as libjpeg: skips garbage and fill bytes
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # restarts and stuffed 0xff continue a scan
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI: markers without a segment
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT, JPG, DAC)
_EOI, _SOS = 0xD9, 0xDA


class ImageBudgetError(PixelpipeError, Image.DecompressionBombError):
    """An image over a decode budget (pixels, JPEG scans), refused before it is decoded. A
    DecompressionBombError, so every caller that maps Pillow's own bomb error maps this too."""

    def __init__(self, message: str, fmt: str | None = None, size: tuple[int, int] | None = None):
        super().__init__(message)
        self.format, self.size = fmt, size


class UnacceptedImageError(PixelpipeError, UnidentifiedImageError):
    """Not an image in one of the accepted formats (not an image at all, or another format)."""


class DamagedImageError(PixelpipeError, OSError):
    """A header too broken to judge the image's size from: refused rather than decoded."""


def pixel_budget(max_pixels: int = MAX_PIXELS) -> int:
    """The pixels an image may have: `max_pixels`, and never above Pillow's own bomb limit."""
    return min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)


@contextmanager
def open_image(
    source: str | os.PathLike[str] | bytes,
    *,
    formats: Iterable[str] = DECODE_FORMATS,
    max_pixels: int = MAX_PIXELS,
    max_scans: int = MAX_JPEG_SCANS,
) -> Iterator[Image.Image]:
    """An opened, not yet decoded image (a file path or the bytes), judged from its headers:
    one of `formats`, at most `max_pixels` (every frame an ICO holds, a WebP's canvas), a JPEG
    with at most `max_scans` scans. Use it inside the `with`: the file closes on exit.

    Raises ImageBudgetError (too large, too many scans), UnacceptedImageError (not an accepted
    format) or DamagedImageError / Pillow's own errors (broken); nothing is decoded by then."""
    formats = tuple(formats)
    budget = pixel_budget(max_pixels)
    with _binary(source) as fp:
        data = _judge_headers(fp, formats, budget, max_scans)
        try:
            image = Image.open(io.BytesIO(data) if data is not None else fp, formats=formats)
        except UnidentifiedImageError:
            accepted = ", ".join(dict.fromkeys(formats))
            raise UnacceptedImageError(f"not an image in an accepted format ({accepted})") from None
        with image:
            _check_pixels(image.size, budget, image.format)
            yield image


@contextmanager
def _binary(source: str | os.PathLike[str] | bytes) -> Iterator[BinaryIO]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(source)
    else:
        with open(source, "rb") as fp:
            yield fp


def _check_pixels(size: tuple[int, int], budget: int, fmt: str | None, what: str = "") -> None:
    width, height = size
    if width * height > budget:
        error = f"{what or fmt or 'image'} {width}x{height} pixels is over max_pixels {budget}"
        raise ImageBudgetError(error, fmt, size)


def _judge_headers(
    fp: BinaryIO, formats: tuple[str, ...], budget: int, max_scans: int
) -> bytes | None:
    """Checks before Image.open, for formats whose opening costs more than a header read: a
    JPEG's scans (its bytes are returned, read once), every ICO frame (Pillow decodes the
    largest one inside Image.open) and a WebP's canvas (libwebp allocates it when opened)."""
    head = fp.read(32)
    fp.seek(0)
    if head.startswith(_JPEG) and "JPEG" in formats:
        data = fp.read()
        scans, segments, size = jpeg_scans(data, max_scans, MAX_JPEG_SEGMENTS)
        if size is not None:
            _check_pixels(size, budget, "JPEG")
        if scans > max_scans or segments > MAX_JPEG_SEGMENTS:
            what = f"{max_scans} scans" if scans > max_scans else f"{MAX_JPEG_SEGMENTS} segments"
            raise ImageBudgetError(
                f"JPEG with more than {what} is refused (a normal progressive JPEG has about 10"
                " scans in a few dozen segments)",
                "JPEG",
                size,
            )
        return data
    if head.startswith(_ICO) and "ICO" in formats:
        for size in ico_frame_sizes(fp):
            _check_pixels(size, budget, "ICO", "ICO frame")
        fp.seek(0)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP" and "WEBP" in formats:
        size = webp_canvas(head)
        if size is None:
            raise DamagedImageError("WebP header does not give the canvas size")
        _check_pixels(size, budget, "WEBP")
    return None


def jpeg_scans(
    data: bytes, max_scans: int | None = None, max_segments: int | None = None
) -> tuple[int, int, tuple[int, int] | None]:
    """(scans, segments, (width, height) of the first frame header or None) of a JPEG up to its
    first EOI, by one linear walk over its segments: lengths skip headers, a regex finds where
    each scan's entropy-coded data ends (where libjpeg's decoder stops too). The walk stops
    once either count passes its limit (None: no limit)."""
    scans = segments = pos = 0
    size = None
    scan_cap, segment_cap = max_scans or len(data), max_segments or len(data)
    while (match := _ANY_MARKER.search(data, pos)) and scans <= scan_cap:
        marker, pos, segments = data[match.end() - 1], match.end(), segments + 1
        if marker == _EOI or segments > segment_cap:
            break
        if marker in _NO_LENGTH:
            continue
        segment = data[pos : pos + 7]
        if len(segment) < 2:
            break
        if marker in _SOF and size is None and len(segment) == 7:
            size = (int.from_bytes(segment[5:7], "big"), int.from_bytes(segment[3:5], "big"))
        pos += int.from_bytes(segment[:2], "big")
        if marker == _SOS:
            scans += 1
            end = _SCAN_END.search(data, pos)
            if end is None:
                break
            pos = end.start()
    return scans, segments, size


def ico_frame_sizes(fp: BinaryIO) -> list[tuple[int, int]]:
    """The sizes of every frame an ICO holds, from the frames' own headers (an embedded PNG's
    IHDR, a BMP's info header), not the directory's claims: Pillow decodes the frame the
    directory says is largest with the size the frame says. One read per directory entry."""
    fp.seek(4)
    count = int.from_bytes(fp.read(2), "little")
    directory = fp.read(16 * count)
    sizes = []
    for entry in range(0, len(directory) - 15, 16):
        fp.seek(int.from_bytes(directory[entry + 12 : entry + 16], "little"))
        sizes.append(_frame_size(fp.read(24)))
    return sizes


def _frame_size(head: bytes) -> tuple[int, int]:
    if head.startswith(_PNG):  # the PNG spec puts IHDR first; Pillow would read others first
        if head[12:16] != b"IHDR":
            raise DamagedImageError("ICO frame: embedded PNG does not start with IHDR")
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if len(head) < 12:
        raise DamagedImageError("ICO frame: truncated header")
    if int.from_bytes(head[:4], "little") == 12:  # OS/2 bitmap header: 16-bit sizes
        return int.from_bytes(head[4:6], "little"), int.from_bytes(head[6:8], "little")
    width, height = int.from_bytes(head[4:8], "little"), int.from_bytes(head[8:12], "little")
    return width, (2**32 - height if head[11] == 0xFF else height)  # top-down: as Pillow


def webp_canvas(head: bytes) -> tuple[int, int] | None:
    """A WebP's canvas size from its first 30 bytes (VP8, VP8L or VP8X), None if unreadable."""
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        little = int.from_bytes
        return little(head[26:28], "little") & 0x3FFF, little(head[28:30], "little") & 0x3FFF
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None
