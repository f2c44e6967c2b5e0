"""Hostile image files made at test time (small on disk, costly to decode), and a counter of
Pillow's decodes, for the tests of the image gate (storage/images.py) on every path."""

from __future__ import annotations

import io
import re
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import IcoImagePlugin, Image, ImageFile, WebPImagePlugin

from tests.http_server import bilevel_png

_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def progressive_jpeg(size: tuple[int, int] = (64, 48), color=(120, 130, 140)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", progressive=True, quality=90)
    return out.getvalue()


def last_scan(data: bytes) -> tuple[int, int]:
    """(start, end) of the last SOS segment of a JPEG Pillow wrote, entropy data included."""
    start = data.rindex(b"\xff\xda")
    end = _SCAN_END.search(data, start + 2 + int.from_bytes(data[start + 2 : start + 4], "big"))
    assert end is not None
    return start, end.start()


def hostile_jpeg(size: tuple[int, int] = (64, 48), repeats: int = 800) -> bytes:
    """A progressive JPEG whose last scan (a refinement pass of end-of-band runs, a few dozen
    bytes) is sent `repeats` more times: libjpeg passes over every block for each copy."""
    data = progressive_jpeg(size)
    start, end = last_scan(data)
    return data[:end] + data[start:end] * repeats + data[end:]


def with_frame_size(data: bytes, size: tuple[int, int]) -> bytes:
    """A JPEG whose frame header (SOF2 here) claims `size`; the scans are left as they are."""
    sof = data.index(b"\xff\xc2")
    return data[: sof + 5] + struct.pack(">HH", size[1], size[0]) + data[sof + 9 :]


def ico(frames: list[tuple[tuple[int, int], bytes]]) -> bytes:
    """An ICO whose directory claims each frame's size (0 means 256) and embeds its bytes."""
    offset = 6 + 16 * len(frames)
    directory, bodies = b"", b""
    for (width, height), body in frames:
        directory += struct.pack(
            "<BBBBHHII", width % 256, height % 256, 0, 0, 1, 32, len(body), offset + len(bodies)
        )
        bodies += body
    return struct.pack("<HHH", 0, 1, len(frames)) + directory + bodies


def lying_ico(size: int = 12000) -> bytes:
    """An ICO whose directory says 256x256 but embeds a size x size PNG (about 20 KB for
    12000: Pillow decodes it inside Image.open, 144 MB as a 1-bit image)."""
    return ico([((256, 256), bilevel_png(size, size))])


def small_png(size: tuple[int, int] = (16, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, (10, 200, 30, 255)).save(out, "PNG")
    return out.getvalue()


def lying_webp(size: tuple[int, int] = (13000, 13000)) -> bytes:
    """An animated WebP of two 16x16 frames on a `size` canvas (libwebp clears and copies the
    whole canvas for the first frame; 169 MP is under Pillow's own 179 MP error limit)."""
    out = io.BytesIO()
    frames = [Image.new("RGB", (16, 16), (c, 2, 3)) for c in (1, 200)]
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:])
    data = out.getvalue()
    assert data[12:16] == b"VP8X"
    w, h = (size[0] - 1).to_bytes(3, "little"), (size[1] - 1).to_bytes(3, "little")
    return data[:24] + w + h + data[30:]


@contextmanager
def pillow_decodes() -> Iterator[list[str]]:
    """Records, in this thread, each time Pillow starts decoding pixels: a call of an image's
    public `load()` (ImageFile's, which most plugins use, and the ICO and WebP plugins' own;
    the ICO plugin calls it from inside Image.open). A real profile hook, no patching."""
    watched = {
        cls.load.__code__: f"{cls.__name__}.load"
        for cls in (ImageFile.ImageFile, IcoImagePlugin.IcoImageFile, WebPImagePlugin.WebPImageFile)
    }
    seen: list[str] = []

    def hook(frame, event, _arg):
        if event == "call" and frame.f_code in watched:
            seen.append(watched[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield seen
    finally:
        sys.setprofile(previous)
