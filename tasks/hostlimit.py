"""Per-host politeness across processes and machines: one Prefect global concurrency limit per
host, held by every request to it, wherever the shard that makes the request runs."""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

HOST_LIMIT_PREFIX = "pixelpipe-host-"
# A slot whose holder died (a killed worker) comes back when its lease runs out; the holder
# renews it while a request lasts longer.
LEASE_S = 60.0


def host_of(url: str) -> str:
    """The limit's unit: scheme-less host and port, as the per-process slots count it."""
    return urlsplit(url).netloc.lower()


def limit_name(prefix: str, host: str) -> str:
    """A Prefect-safe limit name: letters, digits, dots and dashes."""
    return prefix + re.sub(r"[^a-z0-9.-]+", "-", host.lower()).strip("-")


def ensure_limit(name: str, limit: int) -> None:
    """Create the limit, or set it to `limit`; two workers racing to create it both succeed."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.upsert_global_concurrency_limit_by_name(name, limit)
        except ObjectAlreadyExists:  # created by another worker between the read and the write
            client.upsert_global_concurrency_limit_by_name(name, limit)


class GlobalHostSlot:
    """A host's slot for one request: the process's own semaphore first (threads queue there,
    not on the API), then one slot of the host's Prefect global concurrency limit.

    Same interface as the semaphore Fetcher uses (acquire, then release in the same thread).
    The limit is made (or set to `limit`) on first use, so a redirect to a new host is covered.
    """

    def __init__(self, local: threading.BoundedSemaphore, name: str, limit: int) -> None:
        self._local, self.name, self.limit = local, name, limit
        self._held = threading.local()
        self._ready = threading.Lock()
        self._ensured = False

    def _stack(self) -> list:
        if not hasattr(self._held, "stack"):
            self._held.stack = []
        return self._held.stack

    def acquire(self) -> None:
        from prefect.concurrency.sync import concurrency

        with self._ready:
            if not self._ensured:
                ensure_limit(self.name, self.limit)
                self._ensured = True
        self._local.acquire()
        slot = concurrency(self.name, occupy=1, lease_duration=LEASE_S, strict=True)
        try:
            slot.__enter__()
        except BaseException:
            self._local.release()
            raise
        self._stack().append(slot)

    def release(self) -> None:
        slot = self._stack().pop()
        try:
            slot.__exit__(None, None, None)
        finally:
            self._local.release()
