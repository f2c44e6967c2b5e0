"""What the scraper needs from Prefect that Prefect offers no public way to do, in one place.

Everything else uses Prefect's public client methods (`get_client()`), whose signatures are
public. tests/tasks/scrape/test_compat.py fails loudly when what is read here changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse
from prefect.exceptions import PrefectHTTPStatusError

# The answer of /v2/concurrency_limits/increment-with-lease when the slots are taken.
SLOTS_TAKEN = 423


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
        response = client.increment_concurrency_slots_with_lease(
            names, slots, "concurrency", lease_s
        )
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
