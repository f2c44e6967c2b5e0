"""Benchmark prepare_dataset's image work (224x224 JPEG) against a naive one-core Pillow loop.

    .venv/bin/python bench/bench_prepare.py [--copies 3] [--big 60] [--workers N] [--no-flow]
        [--scaling] [--tarball PATH] [--profile]

Unpacks ../shared/data/imagenet-samples-200.tar.gz under /tmp, makes `copies` distinct-byte
copies of each photo in two class folders (n01*, n02*), plus `big` 4x-upscaled re-encodes
(2000x1500-ish, like phone photos) where JPEG draft decoding matters. Prints one table.

The pool is measured two ways: "warm" (workers started and imported before the clock starts,
as every batch after a run's first finds them; the start-up is its own row) and "cold" (start,
imports and stop inside the timing, as a run of one batch pays). `--scaling` adds the warm
pool's wall rate at 1..N processes: how it scales with the cores (meaningful on an idle machine).
`--profile` prints where one core's time goes inside render_file (cProfile, per image) and stops.

What each case does per image. naive: open, full decode, convert("RGB"), bicubic resize, save
(no checks, no EXIF orientation, no tag, a plain write). render_file: the image gate's header
checks (storage/images.py), EXIF orientation, a JPEG draft decode when big, 8-bit RGB/gray,
the chosen filter (bicubic by default), the tag naming its settings, an atomic write. Neither
hashes: prepare's sha256 and perceptual hashes run in inspect_file before rendering.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.gettempdir()) / "pixelpipe-bench-prepare"
TARBALL = ROOT.parent / "shared" / "data" / "imagenet-samples-200.tar.gz"
# The flow runs against a private, fresh Prefect home (its own SQLite database and result
# storage), so the first run's cached inspection is really cold. Workers inherit it.
os.environ.setdefault("PREFECT_HOME", str(WORK / f"prefect-home-{os.getpid()}"))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # busy CPUs

from PIL import Image  # noqa: E402

from flows.gate.runners import machine_cores  # noqa: E402
from tasks.prepare import render as pixels  # noqa: E402

SIZE = 224
SETTINGS = pixels.RenderSettings(image_size=SIZE, resize_mode="stretch", image_format="jpeg")
OTHER = dataclasses.replace(SETTINGS, resample="lanczos")  # the filter not by default


def sources(copies: int, big: int) -> tuple[list[Path], list[Path]]:
    """(ImageNet sample copies, big re-encodes), made once under WORK."""
    samples = WORK / "imagenet-samples"
    if not samples.is_dir():
        with tarfile.open(TARBALL) as tar:
            tar.extractall(WORK, filter="data")
    photos = sorted(samples.glob("*.JPEG"))
    normal = []
    for copy in range(copies):
        for photo in photos:
            target = WORK / "src" / photo.name[:3] / f"{photo.stem}-{copy}.jpg"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                # Trailing bytes after the JPEG end marker: same pixels, a distinct sha256.
                target.write_bytes(photo.read_bytes() + b"\0" * copy)
            normal.append(target)
    large = []
    for photo in photos[:big]:
        target = WORK / "big" / photo.name[:3] / f"{photo.stem}.jpg"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(photo) as img:
                rgb = img.convert("RGB")
                rgb.resize((rgb.width * 4, rgb.height * 4), Image.Resampling.BICUBIC).save(
                    target, quality=90
                )
        large.append(target)
    return normal, large


def naive(files: list[Path], out: Path) -> None:
    """What a first script does: full decode, convert, default (bicubic) resize, save."""
    for i, path in enumerate(files):
        img = Image.open(path).convert("RGB").resize((SIZE, SIZE))
        img.save(out / f"{i}.jpg", quality=SETTINGS.quality)


def ours_one_core(settings: pixels.RenderSettings) -> Callable[[list[Path], Path], None]:
    def run(files: list[Path], out: Path) -> None:
        for i, path in enumerate(files):
            assert pixels.render_file(str(path), str(out / f"{i}.jpg"), settings)[0] == "ok"

    return run


def ours_pool(workers: int) -> Callable[[list[Path], Path], float]:
    """Cold: pool start, worker imports and stop inside the timing."""

    def run(files: list[Path], out: Path) -> float:
        items = [(str(p), str(out / f"{i}.jpg")) for i, p in enumerate(files)]
        try:
            results = pixels.render_many(items, SETTINGS, workers)
            worker_cpu = _cpu_seconds(ready_workers(pixels.get_pool(workers), workers))
        finally:
            pixels.shutdown_pool()  # pool start and stop are part of the wall time
        assert all(status == "ok" for status, _ in results)
        return worker_cpu

    return run


def warm_pool(workers: int, settings: pixels.RenderSettings = SETTINGS) -> Callable:
    """Warm: the workers are started and have imported before the clock starts; only the
    batch's own CPU (a difference of the workers' counters) is counted."""

    def setup() -> Callable[[list[Path], Path], float]:
        pids = ready_workers(pixels.get_pool(workers), workers)
        before = _cpu_seconds(pids)

        def run(files: list[Path], out: Path) -> float:
            items = [(str(p), str(out / f"{i}.jpg")) for i, p in enumerate(files)]
            results = pixels.render_many(items, settings, workers)
            assert all(status == "ok" for status, _ in results)
            return _cpu_seconds(ready_workers(pixels.get_pool(workers), workers)) - before

        return run

    return setup


def pool_start(workers: int) -> tuple[float, float]:
    """(wall, worker CPU seconds) from no pool to `workers` processes ready for work."""
    pixels.shutdown_pool()
    start = time.perf_counter()
    pids = ready_workers(pixels.get_pool(workers), workers)
    wall, cpu = time.perf_counter() - start, _cpu_seconds(pids)
    return wall, cpu


def ready_workers(pool, workers: int) -> set[int]:
    """The pids of all `workers` processes, once each has run a task (so has imported)."""
    pids: set[int] = set()
    while len(pids) < workers:
        pids |= {f.result() for f in [pool.submit(os.getpid) for _ in range(workers)]}
    return pids


def _cpu_seconds(pids: set[int]) -> float:
    """User + system CPU seconds of processes so far (Linux /proc)."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def timed(action: Callable, files: list[Path], warm: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds in this process and its pool workers) of one pass. A warm
    action is a setup returning the action: the setup runs before the clock starts."""
    out = Path(tempfile.mkdtemp(dir=WORK, prefix="out-"))
    if warm:
        action = action()
    else:
        pixels.shutdown_pool()  # a cold case starts its own pool; a loop has none beside it
    start, cpu = time.perf_counter(), time.process_time()
    worker_cpu = action(files, out) or 0.0
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu + worker_cpu
    shutil.rmtree(out)
    return wall, cpu


def draft_fidelity(files: list[Path]) -> tuple[float, float]:
    """(median, worst) PSNR in dB of our draft-decoded resize against LANCZOS from the full
    decode: how much the fast path costs in pixels (above ~40 dB is invisible)."""
    import numpy as np

    scores = []
    for path in files:
        with Image.open(path) as img:
            small = pixels.fit(pixels.load_8bit(img, SETTINGS), SIZE, "stretch", "lanczos")
            ours = small.convert("RGB")
        with Image.open(path) as img:
            full = pixels.to_8bit(img).convert("RGB").resize((SIZE, SIZE), Image.Resampling.LANCZOS)
        error = np.mean((np.asarray(ours, float) - np.asarray(full, float)) ** 2)
        scores.append(10 * np.log10(255**2 / max(error, 1e-10)))
    return float(np.median(scores)), float(min(scores))


def flow_times(workers: int) -> tuple[float, float, int]:
    """(first run, idempotent second run) seconds of the whole flow over WORK/src."""
    from flows.prepare_dataset import prepare_dataset

    data_dir = WORK / "flow-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    warm = WORK / "warm"  # starts Prefect's temporary server outside the timing
    for name in ("a", "b"):
        (warm / name).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), name.encode()[0]).save(warm / name / "x.png")
    warm_params = {"source_dir": str(warm), "data_dir": str(data_dir), "dataset": "w"}
    prepare_dataset(params=warm_params | {"val_fraction": 0.0})  # 2 images: all in train/
    params = {"source_dir": str(WORK / "src"), "data_dir": str(data_dir), "workers": workers}
    start = time.perf_counter()
    first = prepare_dataset(params=params)
    middle = time.perf_counter()
    second = prepare_dataset(params=params)
    end = time.perf_counter()
    assert second.rendered == 0, second
    shutil.rmtree(os.environ["PREFECT_HOME"], ignore_errors=True)
    reuse_check(sorted(Path(first.dataset_dir).glob("*/*/*.jpg")))
    return middle - start, end - middle, first.rendered


def reuse_check(outputs: list[Path]) -> None:
    """What a re-run pays per output to decide reuse: reading the tag from the file's header
    (the settings that made it) against the bare exists() it replaced."""
    timings = {}
    for name, check in (("exists()", Path.exists), ("tag", _tagged)):
        start = time.perf_counter()
        assert all(check(path) for path in outputs)
        timings[name] = (time.perf_counter() - start) / len(outputs) * 1e6
    print(
        f"reuse check per output over {len(outputs)} files: exists() {timings['exists()']:.1f} us,"
        f" tag {timings['tag']:.1f} us ({timings['tag'] / timings['exists()']:.0f}x)"
    )


def _tagged(path: Path) -> bool:
    return pixels.read_tag(path) is not None


def profile(files: list[Path], settings: pixels.RenderSettings, top: int = 14) -> None:
    """Where render_file's CPU goes, per image: the functions with the most time of their own."""
    import cProfile
    import pstats

    out = Path(tempfile.mkdtemp(dir=WORK, prefix="profile-"))
    for i, path in enumerate(files[:20]):  # warm: imports, plugins, page cache
        pixels.render_file(str(path), str(out / f"{i}.jpg"), settings)
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine may be busy
    profiler.runcall(ours_one_core(settings), files, out)
    shutil.rmtree(out)
    stats = pstats.Stats(profiler).stats  # {function: (calls, _, own s, cumulative s, _)}
    rows = sorted(stats.items(), key=lambda item: -item[1][2])
    total = sum(own for _, _, own, _, _ in stats.values())
    print(f"render_file ({settings.resample}) CPU per image: {total / len(files) * 1e6:.0f} us")
    for (file, line, name), (_, _, own, _, _) in rows[:top]:
        where = f"{Path(file).name}:{line} {name}" if line else name
        print(f"  {own / len(files) * 1e6:7.0f} us {own / total:5.1%}  {where[:70]}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3, help="copies of each of the 200 photos")
    parser.add_argument("--big", type=int, default=60, help="big (4x) re-encodes to add")
    parser.add_argument("--workers", type=int, default=machine_cores())
    parser.add_argument("--repeat", type=int, default=3, help="rounds; best of N per case")
    parser.add_argument("--no-flow", action="store_true", help="skip the whole-flow timing")
    parser.add_argument("--scaling", action="store_true", help="warm pool at 2..N processes")
    parser.add_argument("--tarball", type=Path, default=TARBALL, help="the sample photos")
    parser.add_argument("--profile", action="store_true", help="render_file's profile, then stop")
    return parser.parse_args()


def all_cases(normal: list[Path], large: list[Path], w: int, scaling: bool) -> list[tuple]:
    """(name, files, action, warm) of every case; the first of each file set is the baseline."""
    cases = [
        ("naive loop (1 core)", normal, naive, False),
        ("render_file loop (1 core)", normal, ours_one_core(SETTINGS), False),
        ("render_file loop, lanczos", normal, ours_one_core(OTHER), False),
        (f"pool warm ({w} procs)", normal, warm_pool(w), True),
        (f"pool warm, lanczos ({w} procs)", normal, warm_pool(w, OTHER), True),
        (f"pool cold ({w} procs)", normal, ours_pool(w), False),
        ("naive loop, big photos", large, naive, False),
        ("render_file loop, big photos", large, ours_one_core(SETTINGS), False),
        (f"pool warm, big ({w} procs)", large, warm_pool(w), True),
        (f"pool cold, big ({w} procs)", large, ours_pool(w), False),
    ]
    if scaling:
        cases += [(f"pool warm ({n} procs)", normal, warm_pool(n), True) for n in range(2, w)]
    return cases


def run_cases(cases: list[tuple], repeat: int) -> dict[str, tuple[float, float]]:
    """Each case's best (wall, cpu) seconds. The CPU is shared with other work: run the cases
    interleaved, `repeat` rounds, and keep each case's least disturbed pass."""
    best = {name: (float("inf"), float("inf")) for name, *_ in cases}
    for _ in range(repeat):
        for name, files, action, warm in cases:
            wall, cpu = timed(action, files, warm)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    pixels.shutdown_pool()
    return best


def print_table(cases: list[tuple], best: dict[str, tuple[float, float]]) -> dict[int, tuple]:
    """The table, each row against the first case on the same files; returns those baselines."""
    print(
        f"{'case':<32} {'images':>6} {'wall s':>7} {'img/s':>7} {'x naive':>7}"
        f" {'cpu s':>6} {'img/cpu-s':>9} {'x naive':>7}"
    )
    baseline: dict[int, tuple[float, float]] = {}
    for name, files, *_ in cases:
        wall, cpu = best[name]
        rate, per_cpu = len(files) / wall, len(files) / cpu
        base = baseline.setdefault(id(files), (rate, per_cpu))
        print(
            f"{name:<32} {len(files):>6} {wall:>7.2f} {rate:>7.1f} {rate / base[0]:>6.2f}x"
            f" {cpu:>6.2f} {per_cpu:>9.1f} {per_cpu / base[1]:>6.2f}x"
        )
    return baseline


def main() -> None:
    global TARBALL
    args = parse_args()
    TARBALL = args.tarball
    WORK.mkdir(parents=True, exist_ok=True)
    normal, large = sources(args.copies, args.big)
    w = args.workers
    if args.profile:
        print(f"load avg: {os.getloadavg()[0]:.1f}")
        for settings in (SETTINGS, OTHER):
            profile(normal, settings)
        return
    print(f"cpus available: {machine_cores()}, load avg: {os.getloadavg()[0]:.1f}")
    start_wall, start_cpu = min(pool_start(w) for _ in range(args.repeat))
    pixels.shutdown_pool()
    print(f"pool start-up, once per run ({w} procs): {start_wall:.2f} s, {start_cpu:.2f} cpu-s")
    cases = all_cases(normal, large, w, args.scaling)
    best = run_cases(cases, args.repeat)
    baseline = print_table(sorted(cases, key=lambda case: case[1] is large), best)
    if args.scaling:
        one = len(normal) / best["render_file loop (1 core)"][0]
        for n in range(2, w + 1):
            rate = len(normal) / best[f"pool warm ({n} procs)"][0]
            print(f"scaling: {n} procs {rate:7.1f} img/s = {rate / one:.2f}x the 1-core loop")
    if not args.no_flow:
        first, second, rendered = flow_times(w)
        rate = rendered / first
        print(
            f"{'prepare_dataset flow, 1st run':<32} {rendered:>6} {first:>7.2f} {rate:>7.1f}"
            f" {rate / baseline[id(normal)][0]:>6.2f}x"
        )
        print(f"{'prepare_dataset flow, re-run':<32} {rendered:>6} {second:>7.2f}  (no work)")
    median, worst = draft_fidelity(large)
    print(
        f"draft path vs full-decode LANCZOS, big photos: PSNR median {median:.1f} dB,"
        f" worst {worst:.1f} dB"
    )
    print(f"load avg at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
