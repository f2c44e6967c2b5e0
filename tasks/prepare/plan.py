"""Which source files go where in a prepared dataset: classes, dedupe (exact and near), cap,
split, folder upkeep."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storage import files
from storage.errors import ConfigError
from storage.files import IMAGE_EXTENSIONS
from storage.layout import safe_name
from tasks.prepare.near_duplicates import image_groups, informative, to_ints
from tasks.prepare.render import made_by_us

# Extensions decoded (any case); other files in a class folder become `unsupported` rows.
SPLITS = ("train", "val", "test")
MIN_PER_SPLIT = 5  # below this many images of a class in a split, its metrics are noise
STAMP_FILE = "dataset.json"
ASIDE_DIR = ".set-aside"  # files found in the dataset folders that pixelpipe did not write
_OUTPUT_NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png)$")


@dataclass(frozen=True)
class SplitSpec:
    """How kept images are chosen and split; changing it moves files, never re-renders them."""

    seed: int = 1337
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    max_per_class: int | None = None
    # Images whose perceptual hashes differ by at most this many bits are one group, split
    # together; None: only byte-identical files are kept together.
    near_duplicate_distance: int | None = 6

    @property
    def splits(self) -> tuple[str, ...]:
        return SPLITS if self.test_fraction > 0 else SPLITS[:2]


@dataclass(frozen=True)
class SourceFile:
    path: str  # absolute POSIX path
    label: str  # class name after renaming
    size: int
    mtime_ns: int


def resolve_classes(root: Path, labels: Sequence[str] | None) -> dict[Path, str]:
    """Source class folder -> class name. `labels` picks folders; 'src=dst' renames (and merges)."""
    if not root.is_dir():
        raise ConfigError(f"source folder {root} does not exist: pass --source-dir or scrape first")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not labels:
        chosen = {name: name for name in found}
    else:
        chosen = {}
        for item in labels:
            src, _, dst = item.partition("=")
            src, dst = src.strip(), (dst or src).strip()
            if src not in found:
                raise ConfigError(
                    f"label {src!r} has no folder under {root}; found: {', '.join(found) or 'none'}"
                )
            chosen[src] = safe_name(dst, "label") if dst != src else dst
    if not chosen:
        raise ConfigError(f"{root} has no class folders: expected <class>/<image files>")
    return {root / src: dst for src, dst in chosen.items()}


def list_source_files(class_dirs: dict[Path, str]) -> list[SourceFile]:
    """Every non-hidden file below each class folder (recursively, as Keras reads), sorted."""
    files = []
    for folder, label in class_dirs.items():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue  # temporary and system files (.DS_Store, .x.tmp)
                path = Path(dirpath, name).absolute()
                stat = path.stat()
                files.append(SourceFile(path.as_posix(), label, stat.st_size, stat.st_mtime_ns))
    return sorted(files, key=lambda f: (f.label, f.path))


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) fixed by `parts` alone: the basis of every random-looking choice."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(sha256: str, spec: SplitSpec) -> str:
    """The split of an image, from its content hash and the seed only, so it never moves when
    other images come or go."""
    u = unit_hash("split", spec.seed, sha256)
    if u < spec.test_fraction:
        return "test"
    return "val" if u < spec.test_fraction + spec.val_fraction else "train"


def plan(
    files: Sequence[SourceFile],
    infos: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    dataset_dir: Path,
    spec: SplitSpec,
    suffix: str,
    excluded: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One manifest row per source file: status, and split and output path for the kept ones.

    `excluded`: sha256 -> why, images a curation run flagged: `excluded_by_curation`.

    Same bytes in two classes -> every copy `conflict` (it can't teach both labels); again in
    one class -> the first path is kept, the rest `duplicate`. Near-duplicates (perceptual
    hashes within spec.near_duplicate_distance) form a group: split together, by the group's
    smallest sha256, or all `conflict` when the group spans classes. Over max_per_class ->
    `capped`.
    """
    rows = [_base_row(f, info, class_names) for f, info in zip(files, infos, strict=True)]
    for row in rows:
        if row["status"] == "ok" and row["sha256"] in (excluded or {}):
            row.update(status="excluded_by_curation", error=excluded[row["sha256"]])
    by_sha: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            by_sha[row["sha256"]].append(row)
    unique: list[dict[str, Any]] = []
    for copies in by_sha.values():
        labels = sorted({r["label"] for r in copies})
        if len(labels) > 1:
            for r in copies:
                r.update(status="conflict", error=f"same image in classes {', '.join(labels)}")
            continue
        for r in copies[1:]:
            r.update(status="duplicate", error=f"same bytes as {copies[0]['source_path']}")
        unique.append(copies[0])
    by_hash = {info.get("sha256"): info for info in infos}
    group_near_duplicates(unique, by_hash, spec.near_duplicate_distance)
    kept: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in unique:
        if r["status"] == "ok":
            kept[r["label"]].append(r)
    for label_rows in kept.values():
        _cap_and_split(label_rows, dataset_dir, spec, suffix)
    return rows


def group_near_duplicates(
    rows: list[dict[str, Any]], infos: dict[str, dict[str, Any]], distance: int | None
) -> None:
    """Set each row's `near_duplicate_group` (the smallest sha256 among its near-duplicates,
    its own when it has none); a group spanning classes becomes `conflict`, every member.
    `infos`: sha256 -> inspect_file's info (both pHashes and the mean colour)."""
    for r in rows:
        r["near_duplicate_group"] = r["sha256"]
    hashed = [
        r
        for r in rows
        if r.get("phash") and informative(r["phash"]) and infos[r["sha256"]].get("mean_color")
    ]
    if distance is None or len(hashed) < 2:
        return
    found = [infos[r["sha256"]] for r in hashed]
    hashes = to_ints([i["phash"] for i in found] + [i["phash_centre"] for i in found])
    colors = np.array([i["mean_color"] for i in found] * 2, np.float32)
    components = image_groups(hashes, colors, distance, len(hashed))
    members: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r, component in zip(hashed, components, strict=True):
        members[int(component)].append(r)
    for group in members.values():
        if len(group) == 1:
            continue
        key = min(r["sha256"] for r in group)
        labels = sorted({r["label"] for r in group})
        for r in group:
            r["near_duplicate_group"] = key
            if len(labels) > 1:
                others = [g["source_path"] for g in group if g["label"] != r["label"]][:3]
                r.update(
                    status="conflict",
                    error=f"near-duplicate of {', '.join(others)} (classes {', '.join(labels)})",
                )


def _base_row(f: SourceFile, info: dict[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    status, error = "ok", info.get("error")
    if Path(f.path).suffix.lower() not in IMAGE_EXTENSIONS:
        status, error = "unsupported", f"not an image file extension: {Path(f.path).suffix!r}"
    elif error:
        status = info.get("status") or "corrupt"
    return {
        "source_path": f.path,
        "label": f.label,
        "label_index": class_names.index(f.label),
        "sha256": info.get("sha256"),
        "width": info.get("width"),
        "height": info.get("height"),
        "phash": info.get("phash"),
        "near_duplicate_group": None,
        "brightness": info.get("brightness"),
        "contrast": info.get("contrast"),
        "status": status,
        "error": error,
        "split": None,
        "path": None,
    }


def _cap_and_split(rows: list[dict], dataset_dir: Path, spec: SplitSpec, suffix: str) -> None:
    # The cap keeps the images with the smallest seeded hash: deterministic, and drawn
    # independently of the split hash, so capping doesn't empty val/ first.
    rows.sort(key=lambda r: unit_hash("cap", spec.seed, r["sha256"]))
    limit = spec.max_per_class or len(rows)
    for r in rows[limit:]:
        r.update(status="capped", error=f"over max_per_class={limit}")
    for r in rows[:limit]:
        # The group's key: near-duplicates land in one split (a lone image's key is its sha256).
        split = split_of(r["near_duplicate_group"] or r["sha256"], spec)
        path = dataset_dir / split / r["label"] / f"{r['sha256']}{suffix}"
        r.update(split=split, path=path.as_posix())


def read_stamp(dataset_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((dataset_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_stamp(dataset_dir: Path, stamp: dict[str, Any]) -> None:
    files.write_text(dataset_dir / STAMP_FILE, json.dumps(stamp, indent=2, sort_keys=True))


def clear_stamp(dataset_dir: Path) -> None:
    (dataset_dir / STAMP_FILE).unlink(missing_ok=True)


def stamp_matches(dataset_dir: Path, render: dict[str, Any]) -> bool:
    """Whether the folder's outputs were rendered with these settings (so they can be reused)."""
    stamp = read_stamp(dataset_dir)
    return stamp is not None and stamp.get("render") == render


def known_failures(rows: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """sha256 -> [status, error] of the images whose decoding failed, for the stamp."""
    return {
        r["sha256"]: [r["status"], r["error"]]
        for r in rows
        if r["status"] in ("corrupt", "unsupported") and r["sha256"]
    }


def apply_known_failures(rows: Iterable[dict[str, Any]], stamp: dict[str, Any]) -> None:
    """Mark rows whose bytes already failed to decode in an earlier run, so they aren't retried."""
    failed = stamp.get("failed") or {}
    for row in rows:
        if row["status"] == "ok" and row["sha256"] in failed:
            status, error = failed[row["sha256"]]
            row.update(status=status, error=error, split=None, path=None)


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
    dataset_dir: Path, splits: Sequence[str], classes: Sequence[str], keep: set[str], aside: Path
) -> tuple[int, list[Path]]:
    """Make every split hold every class folder (so Keras infers the same class list in each),
    delete our outputs that are no longer planned, and move any other file in a class folder
    (not ours: a user's) to `aside`. Returns (deleted, where the moved files went)."""
    removed, moved = 0, []
    for split_dir in (dataset_dir / s for s in SPLITS):
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            ours, foreign = _unplanned(class_dir, keep)
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


def _unplanned(class_dir: Path, keep: set[str]) -> tuple[list[Path], list[Path]]:
    """The files of a class folder not in `keep`: (our outputs, anyone else's files)."""
    ours, foreign = [], []
    for file in sorted(class_dir.iterdir()):
        if file.as_posix() in keep or file.name.startswith(".") or not file.is_file():
            continue  # hidden: an interrupted write's temporary file, or the user's own
        mine = _OUTPUT_NAME.match(file.name) and made_by_us(file)
        (ours if mine else foreign).append(file)
    return ours, foreign
