"""Where a scrape flow's extra time goes, shard by shard: the same 5,000-image scrape as
bench_overhead.py, as a flow (heartbeats off, as the CLI runs it) and as the task functions
called directly, with the time spent taking host leases, downloading, releasing and writing
each shard, and how many lease increments the Prefect server answered BUSY.

    .venv/bin/python bench/scrape_timeline.py [--images 5000] [--rounds 2] [--shard-size N]

It wraps `tasks.scrape.tasks.host_lease` and `write_table` and the lease client's response
hook to stamp the time (a probe: nothing here changes what the scrape does).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_overhead as bo  # puts the project on sys.path too

MARKS: list[tuple[str, float]] = []


def _instrument() -> None:
    import tasks.scrape.prefect_compat as compat
    import tasks.scrape.tasks as scrape

    real_lease, real_write, real_hook = (
        scrape.host_lease,
        scrape.write_table,
        compat._raise_when_busy,
    )

    @contextlib.contextmanager
    def lease(*args, **kwargs):
        MARKS.append(("take", time.perf_counter()))
        with real_lease(*args, **kwargs) as held:
            MARKS.append(("taken", time.perf_counter()))
            yield held
            MARKS.append(("release", time.perf_counter()))
        MARKS.append(("released", time.perf_counter()))

    def write(*args, **kwargs):
        path = real_write(*args, **kwargs)
        MARKS.append(("written", time.perf_counter()))
        return path

    def hook(response):
        if response.request.url.path.endswith(compat.INCREMENT_PATH):
            MARKS.append((f"increment {response.status_code}", time.perf_counter()))
        return real_hook(response)

    scrape.host_lease, scrape.write_table, compat._raise_when_busy = lease, write, hook


def _spans(start: str, end: str) -> float:
    starts = [t for k, t in MARKS if k == start]
    ends = [t for k, t in MARKS if k == end]
    return sum(b - a for a, b in zip(starts, ends, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=None, help="default: the flow's")
    args = parser.parse_args()
    if args.shard_size:
        bo.SCRAPE["shard_size"] = args.shard_size
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    _instrument()
    print(f"{args.images} images, load average {[f'{x:.2f}' for x in os.getloadavg()]}")
    with (
        bo.served_and_harnessed(args.images, bo.SIZE) as (page, model),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        bo._warm(page, model)
        for r in range(args.rounds):
            for how in ("flow", "direct"):
                data = bo.WORK / f"timeline-{r}-{how}"
                shutil.rmtree(data, ignore_errors=True)
                MARKS.clear()
                os.sync()
                start = time.perf_counter()
                getattr(bo, f"scrape_{how}")(page, data, f"t{r}")
                total = time.perf_counter() - start
                first = next(t for k, t in MARKS if k == "take") - start
                last = total - (max(t for k, t in MARKS if k == "written") - start)
                increments = Counter(k.split()[1] for k, _ in MARKS if k.startswith("increment"))
                print(
                    f"round {r} {how:6}: total {total:5.2f} s | before the first shard {first:4.2f}"
                    f" | leases {_spans('take', 'taken'):4.2f} (increments {dict(increments)})"
                    f" | downloads {_spans('taken', 'release'):4.2f}"
                    f" | releases {_spans('release', 'released'):4.2f}"
                    f" | after the last shard {last:4.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
