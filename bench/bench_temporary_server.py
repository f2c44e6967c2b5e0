"""Benchmark the temporary Prefect server a command starts when no server runs: seconds until
its API answers, pixelpipe's (`prefect server start` without UI or scheduler, a child that dies
with the command) against Prefect's own ephemeral server (the baseline, what pixelpipe used to
start by hand), in one run, alternating.

    .venv/bin/python bench/bench_temporary_server.py [--repeats 3]

Both use one fresh Prefect home; a warm-up start of each runs the database migrations first
(reported, not averaged in).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HOME = Path(tempfile.mkdtemp(prefix="pixelpipe-bench-temp-server-"))
os.environ.update(PREFECT_HOME=str(HOME), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="0")
os.environ.pop("PREFECT_API_URL", None)


def ours() -> float:
    from flows.cli import server

    start = time.perf_counter()
    server.temporary_server()
    seconds = time.perf_counter() - start
    server._Temporary.stop()
    return seconds


def prefects() -> float:
    from prefect.server.api.server import SubprocessASGIServer

    start = time.perf_counter()
    instance = SubprocessASGIServer()  # what Prefect starts lazily in ephemeral mode
    instance.start(timeout=300)
    seconds = time.perf_counter() - start
    instance.stop()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    cases = {"prefect ephemeral (baseline)": prefects, "pixelpipe temporary": ours}
    warm = {name: run() for name, run in cases.items()}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            times[name].append(run())
    base = statistics.median(times["prefect ephemeral (baseline)"])
    print(f"{'server':<30} {'first (s)':>10} {'median (s)':>11} {'ratio':>6}")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:<30} {warm[name]:>10.1f} {median:>11.1f} {median / base:>6.2f}")
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
