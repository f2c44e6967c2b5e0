"""Where a prepare run's memory goes: RSS at the entry and exit of each step, then the peak.

    .venv/bin/python bench/prepare_memory.py DATA_ROOT [--dataset NAME] [--size 32]

DATA_ROOT holds raw/<label>/ images (a bench_scale work folder, e.g.
/tmp/pixelpipe-bench-scale/default-100000). The prepare flow runs once under a temporary
Prefect server into datasets/NAME (fresh each time you pick a new name); each step of
flows/prepare_dataset.py is wrapped to print the process's resident set (VmRSS) when it starts
and ends, and the run ends with the peak (VmHWM). Run it on two sizes and compare: what grows
with the images between them is what bench_scale's memory check sees.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def watched(owner: object, name: str) -> None:
    """Replace owner.name with a wrapper that prints the RSS before and after each call."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def call(*args, **kwargs):
        before = status_mb("VmRSS")
        try:
            return original(*args, **kwargs)
        finally:
            print(f"{name:18} in {before:7.1f} MB  out {status_mb('VmRSS'):7.1f} MB", flush=True)

    setattr(owner, name, call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root")
    parser.add_argument("--dataset", default="memory-probe")
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()

    import tensorflow  # noqa: F401  (as a pipeline process has it: the same baseline)
    from prefect.testing.utilities import prefect_test_harness

    import flows.prepare_dataset as flow
    from tasks.prepare import columns, folders, plan, stamp

    for owner, name in (
        (flow, "_inspect"), (plan, "plan"), (flow, "_pending"), (flow, "_render"),
        (folders, "sync_folders"), (flow, "_write_manifest"), (columns.SourceUrls, "of"),
        (stamp, "known_failures"),
    ):  # fmt: skip
        watched(owner, name)
    with prefect_test_harness(server_startup_timeout=180):
        start = status_mb("VmRSS")
        result = flow.prepare_dataset(
            params={"data_dir": args.data_root, "run_id": "memory-probe",
                    "dataset": args.dataset, "image_size": args.size}
        )  # fmt: skip
    print(f"{result.sources} source files, {result.rendered} rendered; RSS at the start"
          f" {start:.1f} MB, peak (VmHWM) {status_mb('VmHWM'):.1f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
