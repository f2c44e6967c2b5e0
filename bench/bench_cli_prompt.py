"""Benchmark how fast the prompt comes back: a one-image scrape with `pixelpipe server start`
running (the first command after the start, then warm ones), against `pixelpipe --help` in the
same run (the CLI's own floor) as the baseline.

    .venv/bin/python bench/bench_cli_prompt.py [--repeats 5] [--port 4311]

Each command is a fresh `python -m flows.cli` process with stdout on a pipe; "after last line" is
the time from its last output line to its exit (what a person waits for the prompt). The server
runs in a temporary Prefect home on --port and is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.http_server import SiteServer, picture  # noqa: E402


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds to exit, seconds from the last output line to exit) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    last = started
    for _ in process.stdout:
        last = time.perf_counter()
    if process.wait() != 0:
        raise SystemExit(f"pixelpipe {' '.join(args)} failed")
    ended = time.perf_counter()
    return ended - started, ended - last


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--port", type=int, default=4311)
    options = parser.parse_args()
    home = tempfile.mkdtemp(prefix="pixelpipe-bench-prompt-")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": home}
    env.pop("PREFECT_API_URL", None)
    page = {"one.html": b'<img src="img/one.png">', "img/one.png": picture(3, (64, 64), "PNG")}
    rows: dict[str, list[tuple[float, float]]] = {"--help": [], "scrape (first)": [], "scrape": []}
    subprocess.run([sys.executable, "-m", "flows.cli", "server", "start", "--port",
                    str(options.port)], env=env, cwd=ROOT, check=True)  # fmt: skip
    try:
        with SiteServer(files=page) as site:
            for n in range(options.repeats + 1):
                data = tempfile.mkdtemp(prefix="pixelpipe-bench-prompt-data-")
                scrape = ["scrape", "--pages", site.url("one.html"), "--label", "one",
                          "--allow-private-networks", "--data-dir", data]  # fmt: skip
                rows["scrape (first)" if n == 0 else "scrape"].append(timed(scrape, env))
                rows["--help"].append(timed(["--help"], env))
    finally:
        subprocess.run([sys.executable, "-m", "flows.cli", "server", "stop"], env=env, cwd=ROOT)
    base = statistics.median(t for t, _ in rows["--help"])
    print(f"{'command':<16} {'runs':>4} {'median s':>9} {'after last line s':>18} {'x --help':>9}")
    for name, runs in rows.items():
        total = statistics.median(t for t, _ in runs)
        tail = statistics.median(t for _, t in runs)
        print(f"{name:<16} {len(runs):>4} {total:>9.2f} {tail:>18.2f} {total / base:>9.2f}")
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
