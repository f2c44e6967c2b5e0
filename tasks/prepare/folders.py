"""Folder upkeep of a prepared dataset: every split holds every class folder, our stale
outputs go, anyone else's files are set aside (moved, never deleted)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.prepare.columns import arrow_of
from tasks.prepare.plan import SPLITS
from tasks.prepare.render import made_by_us

ASIDE_DIR = ".set-aside"  # files found in the dataset folders that pixelpipe did not write
_OUTPUT_NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png)$")


def set_aside(dataset_dir: Path, found: Iterable[Path], aside: Path) -> list[Path]:
    """Move files pixelpipe did not write out of the way, to the same relative path under
    `aside` (never overwriting one there); return where each went."""
    moved = []
    for file in found:
        target = aside / file.relative_to(dataset_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while target.exists():
            target, n = target.with_name(f"{file.stem}.{n}{file.suffix}"), n + 1
        file.rename(target)
        moved.append(target)
    return moved


def sync_folders(
    dataset_dir: Path, splits: Sequence[str], classes: Sequence[str],
    keep: set[str] | pd.Series, aside: Path,
) -> tuple[int, list[Path]]:  # fmt: skip
    """Make every split hold every class folder (so Keras infers the same class list in each),
    delete our outputs not in `keep` (output paths: a set, or a plan's path column, null for a
    row left out), and move any other file in a class folder (not ours: a user's) to `aside`.
    Returns (deleted, where the moved files went)."""
    kept = pa.array(list(keep), pa.string()) if isinstance(keep, set) else arrow_of(keep)
    removed, moved = 0, []
    for split_dir in (dataset_dir / s for s in SPLITS):
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            ours, foreign = _unplanned(class_dir, kept)
            for file in ours:
                file.unlink()
            removed += len(ours)
            moved += set_aside(dataset_dir, foreign, aside)
            if (split_dir.name not in splits or class_dir.name not in classes) and not any(
                class_dir.iterdir()
            ):
                class_dir.rmdir()
        if split_dir.name not in splits and not any(split_dir.iterdir()):
            split_dir.rmdir()
    for split in splits:
        for name in classes:
            (dataset_dir / split / name).mkdir(parents=True, exist_ok=True)
    return removed, moved


def _unplanned(class_dir: Path, keep: pa.ChunkedArray | pa.Array) -> tuple[list[Path], list[Path]]:
    """The files of a class folder not in `keep`: (our outputs, anyone else's files). Only
    this folder's names are compared (the kept paths under it, as names), and the listing
    stays plain strings: a Path per file (tens of thousands in one class folder) would also
    grow the interpreter's table of interned names, which never shrinks."""
    # hidden: an interrupted write's temporary file, or the user's own
    with os.scandir(class_dir) as entries:
        names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file())
    prefix = f"{class_dir.as_posix()}/"
    here = pc.filter(keep, pc.starts_with(keep, prefix))  # a null path is no one's
    planned = pc.utf8_slice_codeunits(here, len(prefix))
    unplanned = pc.invert(pc.is_in(pa.array(names, pa.string()), value_set=planned))
    ours, foreign = [], []
    for i in np.flatnonzero(unplanned.to_numpy(zero_copy_only=False)).tolist():
        file = class_dir / names[i]
        mine = _OUTPUT_NAME.match(file.name) and made_by_us(file)
        (ours if mine else foreign).append(file)
    return ours, foreign
