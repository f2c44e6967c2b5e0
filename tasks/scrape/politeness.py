"""Per-host politeness, the one mechanism for threads, processes and Dask: a Prefect global
concurrency limit per host key (tasks.scrape.hosts), whose slots a download shard holds under
a lease while it runs, wherever it runs.

Why per shard, not per request: acquiring and releasing a slot costs about 125 ms here (4.5 ms
for a plain API read), against a few ms for a loopback image. A shard takes all `per_host` slots
of each of its hosts (its own threads keep to `per_host` per host), so however many workers and
runs download, at most `per_host` requests reach a host at once.

Why a claim file beside the Prefect lease: Prefect revokes an expired lease only in its
repossessor service, which a real server runs every 15 s but an ephemeral server (the test
harness, a run without PREFECT_API_URL) never runs, and its shortest lease is 60 s. So each lease
also has a claim file, `<data root>/.leases/<lease id>.lease`, touched at every renewal; a shard
kept waiting releases a lease whose claim has not been touched for `lease_s` (its holder died),
so a dead worker blocks its hosts for at most one lease period on any server. A worker killed
in the few milliseconds between the server granting a lease and the claim being written leaves
no claim: that lease waits for the repossessor (60 s + its loop on a real server).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError

from storage.files import write_text
from tasks.runtime import logger
from tasks.scrape.hosts import HostKey, host_key
from tasks.scrape.prefect_compat import api_client, lease_client, try_acquire

HOST_LIMIT_PREFIX = "pixelpipe-host-"
LEASE_S = 60.0  # default lease period: how long a dead holder can block its hosts
SERVER_MIN_LEASE_S = 60.0  # the Prefect server refuses shorter leases (HTTP 422)
MAX_WAIT_S = 0.5  # longest pause between tries while another shard holds the host (one API call)
# A host limit nobody has taken or released a slot of for this long is deleted by the next
# scrape: the server keeps one limit per host scraped recently, not one per host ever scraped.
IDLE_LIMIT_S = 3600.0
MISSING_TRIES = 3  # a limit deleted under us (pruned as idle) is created again this many times


def limit_name(key: HostKey) -> str:
    """The Prefect limit of a host key: readable (`pixelpipe-host-https-example.com-443-`)
    and one per key (a digest of the exact key ends it, so no two keys share a name)."""
    readable = re.sub(r"[^a-z0-9.-]+", "-", f"{key.scheme}-{key.host}-{key.port}")[:100]
    digest = hashlib.sha256(repr((key.scheme, key.host, key.port)).encode()).hexdigest()[:12]
    return f"{HOST_LIMIT_PREFIX}{readable}-{digest}"


def limit_names(urls: list[str]) -> list[str]:
    """The limits of the http(s) hosts among `urls`, sorted, one per host key. A URL that has
    no key (not http(s), unparsable) is skipped: the fetch refuses it without a request."""
    keys = set()
    for url in urls:
        with contextlib.suppress(ValueError):
            keys.add(host_key(url))
    return sorted({limit_name(key) for key in keys})


def ensure_limit(client, name: str, limit: int) -> None:
    """Create the limit, or set it to `limit`; two workers racing to create it both succeed."""
    try:
        client.upsert_global_concurrency_limit_by_name(name, limit)
    except ObjectAlreadyExists:  # created by another worker between the read and the write
        client.upsert_global_concurrency_limit_by_name(name, limit)


def create_host_limits(urls: list[str], per_host: int, idle_s: float = IDLE_LIMIT_S) -> list[str]:
    """Create (or set) every host's limit up front, in the flow, so shards starting together
    do not race to create them (the loser's insert fails on the server and is logged there);
    then delete the other host limits left idle for `idle_s` by earlier scrapes."""
    names = limit_names(urls)
    with api_client() as client:
        for name in names:
            ensure_limit(client, name, per_host)
        prune_idle_limits(client, idle_s, keep=set(names))
    return names


def prune_idle_limits(client, idle_s: float, keep: set[str] = frozenset()) -> list[str]:
    """Delete the host limits (ours: by prefix) that hold no slot and whose slots nobody took,
    released or was refused for `idle_s` seconds (Prefect stamps `updated` at each); returns
    their names. A shard that finds its limit gone creates it again (HostLease)."""
    pruned, offset, page = [], 0, 200
    now = datetime.now(UTC)
    while batch := client.read_global_concurrency_limits(limit=page, offset=offset):
        offset += len(batch)
        for limit in batch:
            idle = limit.active_slots == 0 and limit.updated is not None
            idle = idle and (now - limit.updated).total_seconds() >= idle_s
            if limit.name.startswith(HOST_LIMIT_PREFIX) and limit.name not in keep and idle:
                with contextlib.suppress(ObjectNotFound):  # another scrape pruned it first
                    client.delete_global_concurrency_limit_by_name(limit.name)
                pruned.append(limit.name)
    return pruned


class HostLease:
    """Hold `slots` slots of every named limit for a `with` block: one Prefect lease, renewed
    every third of `lease_s`, with its claim file under `claims` touched at each renewal.

    `wait_s` bounds the wait for the slots (TimeoutError after it); None waits as long as
    other live shards hold the hosts.
    """

    def __init__(
        self,
        names: list[str],
        slots: int,
        claims: Path,
        lease_s: float = LEASE_S,
        wait_s: float | None = None,
    ) -> None:
        self.names, self.slots, self.claims = sorted(set(names)), slots, claims
        self.lease_s, self.wait_s = lease_s, wait_s
        self._stop = threading.Event()
        self._lease: UUID | None = None
        self._renewer: threading.Thread | None = None
        self._client = None  # one for the lease's life: taken, renewed and released with it
        self._closing = contextlib.ExitStack()  # closes that client

    @property
    def claim(self) -> Path:
        return self.claims / f"{self._lease}.lease"

    def __enter__(self) -> HostLease:
        if not self.names:
            return self
        self.claims.mkdir(parents=True, exist_ok=True)
        client = self._closing.enter_context(lease_client())
        try:
            for name in self.names:
                ensure_limit(client, name, self.slots)
            self._lease = self._acquire(client)
            try:
                write_text(self.claim, json.dumps({"names": self.names}))
            except BaseException:  # no claim, no way for others to free it early: give it back
                client.release_concurrency_slots_with_lease(self._lease)
                raise
        except BaseException:
            self._lease = None
            self._closing.close()
            raise
        self._client = client
        self._renewer = threading.Thread(target=self._renew, daemon=True, name="host-lease")
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lease is None:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        with self._closing:
            self._client.release_concurrency_slots_with_lease(self._lease)
        self.claim.unlink(missing_ok=True)

    def _acquire(self, client) -> UUID:
        deadline = None if self.wait_s is None else time.monotonic() + self.wait_s
        server_lease = max(self.lease_s, SERVER_MIN_LEASE_S)
        recreated = 0
        while True:
            got = try_acquire(client, self.names, self.slots, server_lease)
            if got.lease is not None:
                return got.lease
            if got.missing:  # pruned as idle by another scrape between our create and now
                if recreated == MISSING_TRIES:
                    raise RuntimeError(f"host limits {sorted(got.missing)} keep disappearing")
                recreated += 1
                for name in got.missing:
                    ensure_limit(client, name, self.slots)
                continue
            wait = got.retry_after if got.retry_after is not None else MAX_WAIT_S
            if release_stale(client, self.claims, self.names, self.lease_s):
                continue  # a dead holder's slots are free again: try at once
            if deadline is not None and time.monotonic() + 0.05 > deadline:
                raise TimeoutError(f"{self.names} still busy after {self.wait_s} s")
            pause = min(max(wait, 0.05), MAX_WAIT_S)
            if deadline is not None:
                pause = min(pause, max(deadline - time.monotonic(), 0.05))
            self._stop.wait(pause)

    def _renew(self) -> None:
        server_lease = max(self.lease_s, SERVER_MIN_LEASE_S)
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.claim.touch()  # the heartbeat other shards read
                self._client.renew_concurrency_lease(self._lease, server_lease)
            except Exception as e:  # a blip: the next try may work; the lease has slack
                logger().warning("could not renew the host lease %s: %s", self._lease, e)


def release_stale(client, claims: Path, names: list[str], lease_s: float) -> int:
    """Release every lease on one of `names` whose claim file is older than `lease_s` (its
    holder stopped renewing: it died); returns how many. Only `<uuid>.lease` files are read
    and deleted, by the exact name built from the lease id."""
    released = 0
    now = time.time()
    for path in claims.glob("*.lease") if claims.is_dir() else ():
        try:
            lease = UUID(path.stem)
            if path != claims / f"{lease}.lease" or now - path.stat().st_mtime <= lease_s:
                continue
            held = json.loads(path.read_text()).get("names", [])
        except (ValueError, OSError, AttributeError):
            continue  # not ours, half-gone, or being written: look again next time
        if not set(held) & set(names):
            continue
        with contextlib.suppress(PrefectHTTPStatusError):  # already released or repossessed
            client.release_concurrency_slots_with_lease(lease)
        (claims / f"{lease}.lease").unlink(missing_ok=True)
        logger().warning("released lease %s of %s: its holder stopped renewing it", lease, held)
        released += 1
    return released


def host_lease(urls: list[str], per_host: int, claims: Path, lease_s: float = LEASE_S) -> HostLease:
    """The lease a shard holds over `urls`: all `per_host` slots of each host key's limit."""
    return HostLease(limit_names(urls), per_host, claims, lease_s)
