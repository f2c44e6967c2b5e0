"""What Prefect's flow-run heartbeats cost an ad-hoc run: the same empty flow, run six times with
heartbeats (Prefect 3.9's default, 180 s) and six times without (flows.cli.session.no_heartbeats),
interleaved, on a temporary Prefect server. Prints seconds per flow run.

    .venv/bin/python bench/bench_heartbeats.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow
from prefect.testing.utilities import prefect_test_harness

from flows.cli.session import no_heartbeats


@flow
def nothing() -> int:
    return 1


def per_run(runs: int = 6) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        nothing()
    return (time.perf_counter() - started) / runs


def main() -> None:
    print("load average", Path("/proc/loadavg").read_text().split()[:3])
    with prefect_test_harness(server_startup_timeout=120):
        nothing()  # warm: the first run creates the flow
        for _ in range(2):
            on = per_run()
            with no_heartbeats():
                off = per_run()
            print(f"heartbeats on {on:.3f} s per flow run, off {off:.3f} s ({on / off:.1f}x)")


if __name__ == "__main__":
    main()
