"""Per-host politeness across processes and machines: one Prefect global concurrency limit per
host, whose slots a download shard holds while it runs, wherever it runs.

Why per shard, not per request: acquiring and releasing a slot through `concurrency()` costs
about 125 ms here (4.5 ms for a plain API read), against a few ms for a loopback image. A shard
takes all `per_host` slots of each of its hosts (its own threads keep to `per_host` per host),
so however many workers run shards, at most `per_host` requests reach a host at once; shards
for other hosts run in parallel. Cost: two API calls per shard.
"""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

from tasks.runtime import logger

HOST_LIMIT_PREFIX = "pixelpipe-host-"
# The server's minimum lease; renewed every third of it while the shard runs. A worker that
# dies stops renewing; its retried shard releases the dead one's lease at once (the claim file).
LEASE_S = 60.0
MAX_WAIT_S = 0.5  # longest pause between tries while another shard holds the host (one API read)


def host_of(url: str) -> str:
    """The limit's unit: host and port, as the per-process slots count it."""
    return urlsplit(url).netloc.lower()


def limit_name(prefix: str, host: str) -> str:
    """A Prefect-safe limit name: letters, digits, dots and dashes."""
    return prefix + re.sub(r"[^a-z0-9.-]+", "-", host.lower()).strip("-")


def ensure_limit(client, name: str, limit: int) -> None:
    """Create the limit, or set it to `limit`; two workers racing to create it both succeed."""
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.upsert_global_concurrency_limit_by_name(name, limit)
    except ObjectAlreadyExists:  # created by another worker between the read and the write
        client.upsert_global_concurrency_limit_by_name(name, limit)


class HostLease:
    """Hold `slots` slots of every named limit for a `with` block (one lease, renewed).

    `claim` is a file only this shard writes (by run and part): it holds the lease id, so a
    retried shard whose first attempt died releases that lease instead of waiting it out.
    """

    def __init__(self, names: list[str], slots: int, claim: Path) -> None:
        self.names, self.slots, self.claim = sorted(set(names)), slots, claim
        self._stop = threading.Event()
        self._lease: UUID | None = None
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> HostLease:
        from prefect.client.orchestration import get_client

        if not self.names:
            return self
        with get_client(sync_client=True) as client:
            for name in self.names:
                ensure_limit(client, name, self.slots)
            self._release_stale(client)
            self._lease = self._acquire(client)
        self.claim.parent.mkdir(parents=True, exist_ok=True)
        self.claim.write_text(str(self._lease))
        self._renewer = threading.Thread(target=self._renew, daemon=True, name="host-lease")
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from prefect.client.orchestration import get_client

        if self._lease is None:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(self._lease)
        self.claim.unlink(missing_ok=True)

    def _acquire(self, client) -> UUID:
        import httpx

        while True:
            try:
                response = client.increment_concurrency_slots_with_lease(
                    self.names, self.slots, "concurrency", LEASE_S
                )
                return UUID(response.json()["lease_id"])
            except httpx.HTTPStatusError as e:
                if e.response.status_code != 423:  # 423 Locked: the slots are taken for now
                    raise
                wait = float(e.response.headers.get("Retry-After") or MAX_WAIT_S)
                self._stop.wait(min(max(wait, 0.05), MAX_WAIT_S))

    def _release_stale(self, client) -> None:
        try:
            stale = UUID(self.claim.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        import httpx

        with contextlib.suppress(httpx.HTTPStatusError):  # expired and already reclaimed
            client.release_concurrency_slots_with_lease(stale)
        self.claim.unlink(missing_ok=True)

    def _renew(self) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            while not self._stop.wait(LEASE_S / 3):
                try:
                    client.renew_concurrency_lease(self._lease, LEASE_S)
                except Exception as e:  # a blip: the next try may work; the lease has slack
                    logger().warning("could not renew the host lease %s: %s", self._lease, e)


def create_host_limits(urls: list[str], per_host: int, prefix: str) -> list[str]:
    """Create (or set) every host's limit up front, in the flow, so shards starting together
    do not race to create them (the loser's insert fails on the server and is logged there)."""
    from prefect.client.orchestration import get_client

    hosts = {host_of(u) for u in urls if urlsplit(u).scheme.lower() in ("http", "https")}
    names = sorted(limit_name(prefix, h) for h in hosts if h)
    with get_client(sync_client=True) as client:
        for name in names:
            ensure_limit(client, name, per_host)
    return names


def host_lease(urls: list[str], per_host: int, prefix: str | None, claim: Path) -> HostLease:
    """The lease a shard holds over `urls`: all `per_host` slots of each http(s) host's limit
    named `<prefix><host>`; nothing to hold when `prefix` is None (one process: its own
    per-host slots already do it)."""
    hosts = {host_of(u) for u in urls if urlsplit(u).scheme.lower() in ("http", "https")}
    names = [limit_name(prefix, h) for h in hosts if h] if prefix else []
    return HostLease(names, per_host, claim)
