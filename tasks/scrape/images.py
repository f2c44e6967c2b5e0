"""Downloaded bytes as images: `data:` URIs decoded, validated by Pillow, stored by content hash."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from PIL import Image, UnidentifiedImageError

from storage import files
from storage.files import MAX_PIXELS
from storage.images import ImageBudgetError, open_image

# Pillow format -> stored extension. MPO is how Pillow names many phone cameras' JPEGs.
FORMAT_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
FORMAT_EXTENSIONS["BMP"] = "bmp"
# What Image.open may try on downloaded bytes ("JPEG" opens MPO files too); anything else,
# an ICO included, is `not_image` without its plugin ever running.
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")

# --- data: URIs --------------------------------------------------------------------------------

_DATA_URI = re.compile(r"^data:(?P<type>[^,;]*)(?P<params>(;[^,;]*)*?)(?P<b64>;base64)?,", re.I)


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a `data:` URI (base64 or percent-encoded); ValueError when malformed."""
    match = _DATA_URI.match(uri)
    if not match:
        raise ValueError("malformed data: URI (no comma after the media type)")
    payload = uri[match.end() :]
    if match.group("b64"):
        try:
            return base64.b64decode(
                re.sub(r"\s+", "", unquote_to_bytes(payload).decode()), validate=True
            )
        except (binascii.Error, UnicodeDecodeError) as e:
            raise ValueError(f"bad base64 in data: URI: {e}") from e
    return unquote_to_bytes(payload)


# --- validating images -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCheck:
    """What Pillow made of some bytes: `status` "ok" or the reason they are not kept."""

    status: str
    error: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def extension(self) -> str | None:
        return FORMAT_EXTENSIONS.get(self.format or "")


def check_image(data: bytes, min_size: int, max_pixels: int | None = None) -> ImageCheck:
    """Open `data` through the image gate (accepted formats only; the pixel budget, Pillow's
    own bomb limit and the JPEG scan cap judged from the headers), then decode it fully; never
    trusts what the server said it was. A few hundred KB can say 9400x9400: `too_large`
    before a single pixel is decoded."""
    fmt = width = height = None
    budget = max_pixels or MAX_PIXELS
    try:
        with open_image(data, formats=ACCEPTED_FORMATS, max_pixels=budget) as image:
            fmt, (width, height) = image.format, image.size
            if min(width, height) < min_size:
                error = f"{width}x{height} is below min_size {min_size}"
                return ImageCheck("too_small", error, fmt, width, height)
            image.load()  # decode every pixel of the (first) frame: truncation shows up here
    except ImageBudgetError as e:
        return ImageCheck("too_large", str(e), e.format, *(e.size or (None, None)))
    except Image.DecompressionBombError as e:  # Pillow's own limit, met inside Image.open
        return ImageCheck("too_large", f"decompression bomb: {e}")
    except UnidentifiedImageError as e:
        return ImageCheck("not_image", str(e))
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        return ImageCheck("corrupt", f"{type(e).__name__}: {e}", fmt, width, height)
    return ImageCheck("ok", None, fmt, width, height)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_image(data: bytes, path: Path) -> None:
    """Write `data` to `path` atomically (a temporary file renamed over it); a file already
    there with the same size is the same content (its name is the hash) and is kept."""
    if path.exists() and path.stat().st_size == len(data):
        return
    files.write_bytes(path, data)
