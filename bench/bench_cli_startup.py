"""Benchmark ad-hoc CLI runs: seconds to the first image processed and to the end, with a
temporary Prefect server (the baseline) and with `pixelpipe server start` running.

    .venv/bin/python bench/bench_cli_startup.py [--repeats 3] [--images 600]

Each command is a fresh `python -m flows.cli` process on a pseudo-terminal, so it shows the live
bar as a user sees it; "first image" is when the bar (or its finished line) first shows one
image done, read from the terminal's output as it arrives. Cases:
  scrape: one image from a loopback page (tests/http_server.py), a fresh data root each time
  predict: --images generated 32x32 PNGs with a tiny trained Keras model (2 convs, no download)
A warm-up run of each mode goes first (the temporary server's first start in a fresh Prefect home
runs the database migrations: that is reported, not averaged in).
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.gettempdir()) / "pixelpipe-bench-cli"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SIZE = 32

from tests.http_server import SiteServer, picture  # noqa: E402


def tiny_model(folder: Path) -> str:
    """A small CNN (2 convs, 3 classes) with its model card, as train_classifier leaves one."""
    import keras

    from storage.model_card import ModelCard

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "best.keras")
    ModelCard(model="tiny", class_names=["a", "b", "c"], image_size=(SIZE, SIZE)).write(folder)
    return str(folder / "best.keras")


def images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"{i:05d}.png"
        if not path.exists():
            path.write_bytes(picture(i, (SIZE, SIZE), "PNG"))
    return folder


def run_on_pty(args: list[str], env: dict[str, str], first: re.Pattern) -> tuple[float, float, str]:
    """(seconds to the first match of `first` in the output, seconds to exit, output)."""
    leader, follower = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=follower, stderr=follower, env=env, cwd=ROOT)
    os.close(follower)
    text, first_at = "", float("nan")
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        text += ANSI.sub("", data.decode(errors="replace"))
        if first_at != first_at and first.search(text):  # nan: not seen yet
            first_at = time.perf_counter() - start
    proc.wait(timeout=600)
    end = time.perf_counter() - start
    os.close(leader)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{text[-3000:]}")
    return first_at, end, text


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args]


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(home), "COLUMNS": "160"}
    env |= {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    return env


FIRST_SCRAPE = re.compile(r"Downloading 1 image\(s\) for 'one': 1 in")


def first_predicted(total: int) -> re.Pattern:
    # A live bar's count ("37/600") or the finished line ("predict shard ...: 600 in").
    return re.compile(rf"predict shard \S+.*?\b([1-9]\d*)/{total}\b|predict shard \S+: \d+ in")


def measure(mode: str, home: Path, site: SiteServer, model: str, inputs: Path, n: int, i: int):
    env = env_for(home)
    scrape = cli("scrape", "--pages", site.url("one.html"), "--label", "one",
                 "--allow-private-networks", "--no-respect-robots",
                 "--data-dir", str(WORK / f"data-{mode}-{i}"))  # fmt: skip
    predict = cli("predict", "--model", model, "--inputs", str(inputs),
                  "--data-dir", str(WORK / f"data-{mode}-predict"))  # fmt: skip
    s_first, s_end, s_text = run_on_pty(scrape, env, FIRST_SCRAPE)
    p_first, p_end, _ = run_on_pty(predict, env, first_predicted(n))
    hint = "pixelpipe server start` makes runs start faster"
    assert (hint in s_text) == (mode == "temporary"), s_text[-2000:]
    return {"scrape": (s_first, s_end), "predict": (p_first, p_end)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=600)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model = tiny_model(WORK / "model")
    inputs = images(WORK / f"inputs-{args.images}", args.images)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), "?")
    print(f"CPU: {cpu}, {len(os.sched_getaffinity(0))} cores; {args.images} images to predict")
    stamp = time.strftime("%Y%m%d-%H%M%S")  # fresh Prefect homes: the first start migrates
    homes = {"temporary": WORK / f"home-temporary-{stamp}", "server": WORK / f"home-server-{stamp}"}
    page = b'<html><body><img src="/a.png"></body></html>'
    results: dict[str, list[dict]] = {"temporary": [], "server": []}
    with SiteServer(root=None, files={"one.html": page, "a.png": picture(1, fmt="PNG")}) as site:
        started = time.perf_counter()
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = str(free.getsockname()[1])
        subprocess.run(cli("server", "start", "--port", port), env=env_for(homes["server"]),
                       cwd=ROOT, check=True, timeout=300)  # fmt: skip
        took = time.perf_counter() - started
        print(f"pixelpipe server start (fresh home, migrations): {took:.1f} s")
        try:
            for mode, home in homes.items():
                warm = measure(mode, home, site, model, inputs, args.images, 0)
                print(f"warm-up {mode}: {fmt(warm)}")
            for i in range(1, args.repeats + 1):
                for mode, home in homes.items():  # interleaved: both see the same machine load
                    results[mode].append(measure(mode, home, site, model, inputs, args.images, i))
                    print(f"round {i} {mode}: {fmt(results[mode][-1])}")
        finally:
            subprocess.run(cli("server", "stop"), env=env_for(homes["server"]), cwd=ROOT)
    table(results)


def fmt(result: dict) -> str:
    return ", ".join(f"{k} first {a:.1f} s end {b:.1f} s" for k, (a, b) in result.items())


def table(results: dict[str, list[dict]]) -> None:
    print("\n| command | measure | temporary server s (median, min) | pixelpipe server s"
          " (median, min) | ratio (median) |\n|---|---|---:|---:|---:|")  # fmt: skip
    for case in ("scrape", "predict"):
        for k, what in enumerate(("first image", "end")):
            temp = [r[case][k] for r in results["temporary"]]
            srv = [r[case][k] for r in results["server"]]
            ratio = statistics.median(srv) / statistics.median(temp)
            print(f"| {case} | {what} | {statistics.median(temp):.2f}, {min(temp):.2f} |"
                  f" {statistics.median(srv):.2f}, {min(srv):.2f} | {ratio:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
