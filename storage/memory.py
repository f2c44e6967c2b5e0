"""Memory a stage freed, handed back to the system before the next stage (a parent flow runs
its stages in one process, so what one stage's allocators keep adds to the next one's peak)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


def release_unused_memory() -> None:
    """Hand back what the allocators keep for reuse: Arrow's pool (mimalloc) after big tables
    and Parquet writes, and glibc malloc's free pages (Python objects, Pillow and NumPy
    buffers, and the arenas of the threads that ran tasks), which glibc keeps until
    `malloc_trim`. Without it the flow process's peak grows with every image a stage handled
    even after the stage let go of them. Cheap (milliseconds); imports nothing new."""
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None on a C library without it (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
