"""The prepare process pool: a file is `corrupt` only when it breaks a healthy worker, and a
pool that cannot work renders in-process instead of blaming the data."""

from __future__ import annotations

import os
from pathlib import Path

from joblib.externals.loky import get_reusable_executor

from tasks.prepare import render as pixels
from tests.tasks.prepare.test_render import SETTINGS, halves


def crash_on_poison(source: str, output: str, settings: pixels.RenderSettings):
    """render_file, except that a file named `poison*` kills its process (a decoder segfault)."""
    if Path(source).name.startswith("poison"):
        os._exit(3)
    return pixels.render_file(source, output, settings)


def sources(folder: Path, names: list[str]) -> list[tuple[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i, name in enumerate(names):
        halves((30 + i, 20)).save(folder / name)
        items.append((str(folder / name), str(folder.parent / "out" / f"{i:064x}.jpg")))
    return items


def test_only_the_file_that_kills_its_worker_is_corrupt(tmp_path):
    items = sources(tmp_path / "src", ["a.png", "poison.png", "b.png"])
    try:
        results = pixels.render_many(items, SETTINGS, workers=2, render=crash_on_poison)
    finally:
        pixels.shutdown_pool()
    statuses = [status for status, _ in results]
    assert statuses == ["ok", "corrupt", "ok"]
    assert "crashed or hung its worker" in results[1][1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        Path(out).name for n, (_, out) in enumerate(items) if n != 1
    )


def test_a_pool_that_cannot_start_renders_in_process_with_a_warning(tmp_path, monkeypatch):
    """Workers that die as they start (as forkserver's did under `python -`): every image is
    still rendered, here, with one warning saying why; none is blamed."""

    def dead_pool(workers: int):
        return get_reusable_executor(max_workers=workers, initializer=os._exit, initargs=(4,))

    monkeypatch.setattr(pixels, "get_pool", dead_pool)
    items = sources(tmp_path / "src", [f"{n}.png" for n in "abcdef"])
    warnings: list[str] = []
    try:
        results = pixels.render_many(items, SETTINGS, workers=2, warn=warnings.append)
    finally:
        dead_pool(1).shutdown(wait=True, kill_workers=True)
    assert results == [("ok", None)] * len(items)
    assert len(warnings) == 1 and "pool is broken" in warnings[0]
    assert len(list((tmp_path / "out").iterdir())) == len(items)


def render_with_pid(source: str, output: str, settings: pixels.RenderSettings):
    """render_file, with the pid of the process that rendered as the row's error text."""
    return pixels.render_file(source, output, settings)[0], str(os.getpid())


# Run in a worker through a builtin, so that the probe itself imports nothing there.
_WATCHED = ("tasks.prepare.render", "PIL.WebPImagePlugin", "scipy", "prefect")
_HEAVY_IMPORTS = f"sorted(m for m in __import__('sys').modules if m in {_WATCHED!r})"


def test_workers_import_their_modules_at_start_and_nothing_heavy(tmp_path):
    """A worker has imported render (and every Pillow plugin) before its first task, in its
    initializer, and not SciPy or Prefect, which rendering never uses."""
    pixels.shutdown_pool()
    try:
        pixels.start_pool(2)
        imported = pixels.get_pool(2).submit(eval, _HEAVY_IMPORTS).result(timeout=120)
    finally:
        pixels.shutdown_pool()
    assert imported == ["PIL.WebPImagePlugin", "tasks.prepare.render"]


def test_workers_stay_warm_across_batches(tmp_path):
    """Two batches are rendered by the same two processes: nothing restarts between them."""
    first = sources(tmp_path / "a", [f"{n}.png" for n in "abcdef"])
    second = sources(tmp_path / "b", [f"{n}.png" for n in "ghijkl"])
    try:
        results = [
            pixels.render_many(batch, SETTINGS, workers=2, render=render_with_pid)
            for batch in (first, second)
        ]
    finally:
        pixels.shutdown_pool()
    pids = {pid for batch in results for _, pid in batch}
    assert [status for batch in results for status, _ in batch] == ["ok"] * 12
    assert 1 <= len(pids) <= 2 and str(os.getpid()) not in pids
