"""Files on disk: the one atomic writer, and which file names count as images."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Image files a folder search picks up (scrape's links, prepare's sources, training and
# prediction inputs); a file named explicitly is read whatever its name.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff"}
    | {".ppm", ".pgm", ".pbm", ".pnm", ".ico"}
)
# Largest image (width x height) scrape keeps and prepare decodes: a 48 MP phone photo fits;
# decoded as RGB(X) it is about 200 MB. Above it an image is refused from its header alone.
MAX_PIXELS = 50_000_000
# What image_dataset_from_directory (training's reader) decodes; prepare writes .jpg or .png.
TF_IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})


def is_image_name(name: str | os.PathLike[str]) -> bool:
    """Whether a file name (or path) has an image extension, any case. No Path is built: a
    Path per file interns its parts, and at 100,000 files that table never shrinks."""
    return os.path.splitext(os.fspath(name))[1].lower() in IMAGE_EXTENSIONS


def image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted (hidden files, e.g. temp files, skipped)."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and is_image_name(p) and p.name[0] != "."
    )


@contextmanager
def atomic_path(path: str | os.PathLike[str], durable: bool = True) -> Iterator[Path]:
    """Yield a unique temporary path beside `path`; on success it is fsynced and renamed over
    `path` (then the folder is fsynced), on failure removed. Readers see the old file or the
    whole new one, never half of one, and two writers of one path never share a temp name.
    `durable=False` skips the fsyncs, for files derived from others that a re-run remakes."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        if durable:
            fsync(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync(final.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_with(
    path: str | os.PathLike[str], save: Callable[[Path], object], durable: bool = True
) -> Path:
    """Atomically write whatever `save(tmp_path)` writes (Pillow, pyarrow, Keras, ...)."""
    with atomic_path(path, durable) as tmp:
        save(tmp)
    return Path(path)


def fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk; a no-op where the OS cannot."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
