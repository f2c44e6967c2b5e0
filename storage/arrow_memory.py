"""Arrow's allocator: what it keeps for reuse, handed back to the system between stages."""

from __future__ import annotations

import pyarrow as pa


def release_unused_memory() -> None:
    """Hand the memory Arrow's allocator keeps for reuse back to the system. Its default pool
    (mimalloc) holds what a big table or a Parquet write freed, and no later stage (Keras,
    Pillow, Python's own heap) can reuse it: the flow process's peak would grow with every
    image a stage handled. Cheap (milliseconds); call it after a stage's big Arrow work."""
    pa.default_memory_pool().release_unused()
