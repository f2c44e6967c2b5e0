"""What the scraper needs from Prefect that Prefect offers no public way to do, in one place.

Everything else uses Prefect's public client methods (`get_client()`), whose signatures are
public. tests/tasks/scrape/test_compat.py fails loudly when what is read here changes.
"""

from __future__ import annotations

import contextvars
import functools
import ssl
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import certifi
from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY

# The answer of /v2/concurrency_limits/increment-with-lease when the slots are taken.
SLOTS_TAKEN = 423
INCREMENT_PATH = "/v2/concurrency_limits/increment-with-lease"
# The server's answer when SQLite refused a write that may be tried again at once
# (SQLITE_BUSY_SNAPSHOT): the increment reads the limits, then writes, in one deferred
# transaction, so a write between the two (the server recording the events and logs a run has
# just sent) fails it at once, with nothing taken. Here 4 one-image scrapes in 9 met it, most
# often the first after `server start`; in a flow, whose task runs send events as each shard
# starts, 6 or 7 shards in 10 did. Prefect's client tries a 503 again only after 2 s (± jitter;
# even with its retries off, it sleeps before giving up): a lease client asks again after
# QUICK_PAUSE_S, doubled at each try (the write in the way takes milliseconds), QUICK_TRIES
# times (0.3 s in all), then leaves it to Prefect's retries.
BUSY = 503
QUICK_TRIES = 6
QUICK_PAUSE_S = 0.005

_quick = contextvars.ContextVar("pixelpipe_quick_increment", default=False)


class Busy(Exception):
    """The server answered BUSY to an increment: nothing was taken; ask again."""


@dataclass(frozen=True)
class Acquired:
    """A try for slots: the lease when granted; else how long the server asks us to wait."""

    lease: UUID | None
    retry_after: float | None = None
    missing: frozenset[str] = frozenset()  # named limits the server does not have (no lease)


def try_acquire(client, names: list[str], slots: int, lease_s: float) -> Acquired:
    """One try for `slots` slots of every limit in `names`, under a lease of `lease_s` seconds.

    Missing upstream: Prefect's public `prefect.concurrency.sync.concurrency()` takes slots and
    renews their lease, but never tells its caller the lease id, and a worker that dies must be
    freed by that id (the repossessor that would free it runs only on a long-lived server, never
    on an ephemeral one, and not before 60 s). So this calls the client's public
    `increment_concurrency_slots_with_lease` and reads its "slots taken" answer, HTTP 423 with
    a Retry-After header, as Prefect's own `prefect.concurrency.services` does; the REST API
    reference lists only 200 and 422 for this endpoint.
    """
    try:
        response = _increment(client, names, slots, lease_s)
    except PrefectHTTPStatusError as e:
        if e.response.status_code != SLOTS_TAKEN:
            raise
        wait = e.response.headers.get("Retry-After")
        return Acquired(None, float(wait) if wait else None)
    granted = ConcurrencyLimitWithLeaseResponse.model_validate(response.json())
    missing = frozenset(names) - {limit.name for limit in granted.limits}
    if missing:  # the server skips limits it does not have: the lease holds only the others
        client.release_concurrency_slots_with_lease(granted.lease_id)
        return Acquired(None, missing=missing)
    return Acquired(granted.lease_id)


def _increment(client, names: list[str], slots: int, lease_s: float) -> Any:
    """The increment; asked again within a fraction of a second while the server answers BUSY
    (a lease client's hook raises Busy then), and last with Prefect's own retries."""
    for attempt in range(1, QUICK_TRIES + 1):
        token = _quick.set(True)
        try:
            return client.increment_concurrency_slots_with_lease(
                names, slots, "concurrency", lease_s
            )
        except Busy:
            pass
        finally:
            _quick.reset(token)
        time.sleep(QUICK_PAUSE_S * 2 ** (attempt - 1))
    return client.increment_concurrency_slots_with_lease(names, slots, "concurrency", lease_s)


def _raise_when_busy(response: Any) -> None:
    """Response hook of Prefect's client (no HTTP of ours): Busy for a BUSY answer to a quick
    increment. Raised from the client's send, it passes through Prefect's retry loop (which
    catches only transport errors), before the loop's 2 s sleep."""
    if (
        _quick.get()
        and response.status_code == BUSY
        and response.request.url.path.endswith(INCREMENT_PATH)
    ):
        raise Busy(response.request.url.path)


def lease_client() -> Any:
    """Prefect's sync client (public `get_client(httpx_settings=...)`), whose BUSY answers to
    `try_acquire`'s increments are asked again at once rather than after 2 s."""
    return api_client(event_hooks={"response": [_raise_when_busy]})


def api_client(**httpx_settings: Any) -> Any:
    """Prefect's sync client on this process's one TLS context.

    Prefect builds a new `ssl.SSLContext` (its CA file loaded) for every client it makes, 20 ms
    of CPU each, even for an http:// API; a scrape makes a few clients per shard (the host
    lease, its renewal thread, its release). A context passed in `httpx_settings["verify"]` is
    used as it is, so every client here shares one, built as Prefect would build it."""
    return get_client(sync_client=True, httpx_settings={"verify": _tls_context(), **httpx_settings})


def _tls_context() -> ssl.SSLContext:
    return _tls_context_for(
        bool(PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value()), PREFECT_API_SSL_CERT_FILE.value()
    )


@functools.cache
def _tls_context_for(insecure: bool, cert_file: str | None) -> ssl.SSLContext:
    """Prefect's choice (prefect/client/orchestration SyncPrefectClient): no verification when
    told to skip it, else the given CA file, else certifi's. Cached per setting."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=cert_file or certifi.where())
