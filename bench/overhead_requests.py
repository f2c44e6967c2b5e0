"""What a flow asks of the Prefect server that the direct calls do not: API requests (by
method and path, with the status when it is not a success) and events, per stage, for the
same scrape -> prepare -> predict as bench_overhead.py (heartbeats off, as the CLI runs it).

    .venv/bin/python bench/overhead_requests.py [--images 5000]

It counts in httpx's send and Prefect's events client (a probe: nothing is changed). A BUSY
answer to a lease increment shows as `... 503`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_overhead as bo  # puts the project on sys.path too

REQUESTS: Counter[str] = Counter()
EVENTS: Counter[str] = Counter()


def _count() -> None:
    import httpx
    from prefect.events.clients import PrefectEventsClient

    send, asend, emit = httpx.Client.send, httpx.AsyncClient.send, PrefectEventsClient._emit

    def key(request, response) -> str:
        path = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "{id}", request.url.path)
        path = re.sub(r"/pixelpipe-host-[^/]+", "/pixelpipe-host-{host}", path)
        status = f" {response.status_code}" if response.status_code >= 300 else ""
        return f"{request.method} {path}{status}"

    def counted_send(self, request, *args, **kwargs):
        try:
            response = send(self, request, *args, **kwargs)
        except Exception as e:  # a lease client's hook raises on BUSY, after the answer came
            REQUESTS[f"{request.method} {request.url.path} raised {type(e).__name__}"] += 1
            raise
        REQUESTS[key(request, response)] += 1
        return response

    async def counted_asend(self, request, *args, **kwargs):
        response = await asend(self, request, *args, **kwargs)
        REQUESTS[key(request, response)] += 1
        return response

    async def counted_emit(self, event):
        EVENTS[event.event] += 1
        return await emit(self, event)

    httpx.Client.send, httpx.AsyncClient.send = counted_send, counted_asend
    PrefectEventsClient._emit = counted_emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    args = parser.parse_args()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    _count()
    with (
        bo.served_and_harnessed(args.images, bo.SIZE) as (page, model),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        bo._warm(page, model)
        for how in ("flow", "direct"):
            data = bo.WORK / f"requests-{how}"
            shutil.rmtree(data, ignore_errors=True)
            for stage in ("scrape", "prepare", "predict"):
                REQUESTS.clear()
                EVENTS.clear()
                inputs = {"scrape": (page, data), "prepare": (data,), "predict": (model, data)}
                seconds, _ = bo.timed(getattr(bo, f"{stage}_{how}"), *inputs[stage], "q")
                print(
                    f"{how:6} {stage:8} {seconds:5.2f} s: {REQUESTS.total()} requests,"
                    f" {EVENTS.total()} events",
                    flush=True,
                )
                for name, n in sorted(REQUESTS.items(), key=lambda item: -item[1]):
                    print(f"    {n:3d}  {name}")
                for name, n in sorted(EVENTS.items(), key=lambda item: -item[1]):
                    print(f"    {n:3d}  event {name}")


if __name__ == "__main__":
    main()
