"""Which source files go where in a prepared dataset: classes, dedupe (exact and near), cap,
split, folder upkeep."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from storage import files
from storage.errors import ConfigError
from storage.files import IMAGE_EXTENSIONS
from storage.layout import safe_name
from tasks.prepare.columns import COLOURS as _COLOURS
from tasks.prepare.columns import failures
from tasks.prepare.near_duplicates import MIN_HASH_BITS, image_groups
from tasks.prepare.render import made_by_us

# Extensions decoded (any case); other files in a class folder become `unsupported` rows.
SPLITS = ("train", "val", "test")
MIN_PER_SPLIT = 5  # below this many images of a class in a split, its metrics are noise
STAMP_FILE = "dataset.json"
ASIDE_DIR = ".set-aside"  # files found in the dataset folders that pixelpipe did not write
_OUTPUT_NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png)$")
_FILES = pa.schema(
    [("source_path", pa.string()), ("label", pa.string()), ("size", pa.int64()),
     ("mtime_ns", pa.int64())]
)  # fmt: skip
_LIST_CHUNK = 4096  # files listed as Python objects before they become an Arrow chunk
# Nullable integers stay integers in the plan (a missing width is <NA>, not a float NaN).
_NULLABLE = {pa.int32(): pd.Int32Dtype(), pa.uint64(): pd.UInt64Dtype()}


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


def list_source_files(class_dirs: dict[Path, str]) -> pd.DataFrame:
    """Every non-hidden file below each class folder (recursively, as Keras reads), sorted by
    (label, path): columns source_path (absolute POSIX), label, size, mtime_ns. Gathered in
    Arrow chunks, so a big folder never sits in memory as Python strings."""
    chunks, found = [], _listing()
    for folder, label in class_dirs.items():
        for path, stat in _walk(folder.absolute()):
            for column, value in zip(
                found, (path, label, stat.st_size, stat.st_mtime_ns), strict=True
            ):
                found[column].append(value)
            if len(found["source_path"]) >= _LIST_CHUNK:
                chunks.append(pa.table(found, schema=_FILES))
                found = _listing()
    chunks.append(pa.table(found, schema=_FILES))
    files = pa.concat_tables(chunks).sort_by([("label", "ascending"), ("source_path", "ascending")])
    return files.to_pandas()


def _listing() -> dict[str, list[Any]]:
    return {name: [] for name in _FILES.names}


def _walk(folder: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(POSIX path, stat) of every non-hidden file below `folder`, hidden folders skipped."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):  # temporary and system files (.DS_Store, .x.tmp)
                path = os.path.join(dirpath, name)
                yield Path(path).as_posix(), os.stat(path)


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
    files: pd.DataFrame,
    inspected: pa.Table,
    class_names: Sequence[str],
    dataset_dir: Path,
    spec: SplitSpec,
    suffix: str,
    excluded: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One manifest row per source file (a DataFrame in `files`' order, columns as the
    dataset_manifest's but phash a nullable uint64): status, and split and output path for the
    kept ones. `inspected`: inspect_file's findings, a columns.INSPECTION row per file.

    `excluded`: sha256 -> why, images a curation run flagged: `excluded_by_curation`.

    Same bytes in two classes -> every copy `conflict` (it can't teach both labels); again in
    one class -> the first path is kept, the rest `duplicate`. Near-duplicates (perceptual
    hashes within spec.near_duplicate_distance) form a group: split together, by the group's
    smallest sha256, or all `conflict` when the group spans classes. Over max_per_class ->
    `capped`.
    """
    rows = _base_rows(files, inspected, class_names)
    if excluded:
        hit = (rows["status"] == "ok") & rows["sha256"].isin(list(excluded))
        _mark(rows, hit, "excluded_by_curation", rows["sha256"][hit].map(excluded))
    unique = _dedupe(rows)
    group_near_duplicates(rows, unique, spec.near_duplicate_distance)
    kept = unique[(rows["status"].to_numpy()[unique] == "ok")]
    _cap_and_split(rows, kept, dataset_dir, spec, suffix)
    return rows.drop(columns=["phash_centre", *_COLOURS])


def _base_rows(
    files: pd.DataFrame, inspected: pa.Table, class_names: Sequence[str]
) -> pd.DataFrame:
    info = inspected.to_pandas(types_mapper=_NULLABLE.get)
    rows = pd.DataFrame(
        {
            "source_path": files["source_path"],
            "label": files["label"],
            "label_index": files["label"].map({c: i for i, c in enumerate(class_names)}),
        }
    ).astype({"label_index": "int32"})
    for column in ("sha256", "width", "height", "phash", "phash_centre", *_COLOURS):
        rows[column] = info[column].to_numpy() if column in _COLOURS else info[column].array
    rows["near_duplicate_group"] = pd.Series(pd.NA, index=rows.index, dtype="str")
    rows["brightness"], rows["contrast"] = info["brightness"], info["contrast"]
    failed = info["error"].notna()
    rows["status"] = info["status"].where(info["status"].notna(), "corrupt").where(failed, "ok")
    rows["error"] = info["error"]
    paths = files["source_path"]
    unsupported = ~np.fromiter(
        (Path(p).suffix.lower() in IMAGE_EXTENSIONS for p in paths), bool, len(paths)
    )
    if unsupported.any():
        suffixes = paths[unsupported].map(lambda p: Path(p).suffix)
        _mark(
            rows, unsupported, "unsupported", "not an image file extension: " + suffixes.map(repr)
        )
    rows["split"] = pd.Series(pd.NA, index=rows.index, dtype="str")
    rows["path"] = pd.Series(pd.NA, index=rows.index, dtype="str")
    return rows


def _mark(rows: pd.DataFrame, where: Any, status: str, error: Any) -> None:
    """Set the status and error of the rows `where` selects (a mask or positions)."""
    rows.loc[where, "status"] = status
    rows.loc[where, "error"] = error


def _dedupe(rows: pd.DataFrame) -> np.ndarray:
    """Mark `conflict` and `duplicate` copies; return the positions of the one kept copy of
    each ok image, in row order."""
    ok = rows[rows["status"] == "ok"]
    classes = ok.groupby("sha256", sort=False)["label"].transform("nunique")
    clash = ok[classes > 1]
    if len(clash):
        names = clash.groupby("sha256")["label"].agg(lambda s: ", ".join(sorted(set(s))))
        _mark(rows, clash.index, "conflict", "same image in classes " + clash["sha256"].map(names))
    single = ok[classes == 1]
    first = ~single["sha256"].duplicated(keep="first")
    copies = single.index[~first]
    if len(copies):
        source = single[first].set_index("sha256")["source_path"]
        again = rows.loc[copies, "sha256"].map(source)
        _mark(rows, copies, "duplicate", "same bytes as " + again)
    return single.index[first].to_numpy()


def group_near_duplicates(rows: pd.DataFrame, unique: np.ndarray, distance: int | None) -> None:
    """Set the `near_duplicate_group` of the rows at `unique` (the smallest sha256 among its
    near-duplicates, its own when it has none); a group spanning classes becomes `conflict`,
    every member. Reads the phash, phash_centre and mean colour columns."""
    rows.loc[unique, "near_duplicate_group"] = rows["sha256"].to_numpy()[unique]
    phash = rows["phash"].to_numpy(dtype=np.uint64, na_value=0)[unique]
    colours = rows[list(_COLOURS)].to_numpy(np.float32)[unique]
    usable = (np.bitwise_count(phash) >= MIN_HASH_BITS) & ~np.isnan(colours).any(axis=1)
    hashed = unique[usable]
    if distance is None or len(hashed) < 2:
        return
    centre = rows["phash_centre"].to_numpy(dtype=np.uint64, na_value=0)[hashed]
    hashes = np.concatenate([phash[usable], centre])
    components = image_groups(hashes, np.concatenate([colours[usable]] * 2), distance, len(hashed))
    sizes = np.bincount(components)
    for component in np.unique(components[sizes[components] > 1]):
        _join(rows, hashed[components == component])


def _join(rows: pd.DataFrame, members: np.ndarray) -> None:
    """One near-duplicate group (positions, in row order): its key, and `conflict` for all
    when it spans classes."""
    group = rows.loc[members]
    rows.loc[members, "near_duplicate_group"] = group["sha256"].min()
    labels = sorted(set(group["label"]))
    if len(labels) < 2:
        return
    for position, label in zip(members, group["label"], strict=True):
        others = group["source_path"][group["label"] != label].tolist()[:3]
        error = f"near-duplicate of {', '.join(others)} (classes {', '.join(labels)})"
        _mark(rows, [position], "conflict", error)


def _cap_and_split(
    rows: pd.DataFrame, kept: np.ndarray, dataset_dir: Path, spec: SplitSpec, suffix: str
) -> None:
    # The cap keeps the images with the smallest seeded hash: deterministic, and drawn
    # independently of the split hash, so capping doesn't empty val/ first.
    chosen = rows.loc[kept, ["label", "sha256", "near_duplicate_group"]]
    chosen["cap"] = [unit_hash("cap", spec.seed, sha) for sha in chosen["sha256"]]
    order = chosen.sort_values(["label", "cap"], kind="stable")
    rank = order.groupby("label", sort=False).cumcount()
    if spec.max_per_class:
        over = rank.index[rank >= spec.max_per_class]
        _mark(rows, over, "capped", f"over max_per_class={spec.max_per_class}")
        chosen = chosen.drop(index=over)
    # The group's key: near-duplicates land in one split (a lone image's key is its sha256).
    splits = [split_of(key, spec) for key in chosen["near_duplicate_group"]]
    rows.loc[chosen.index, "split"] = splits
    # Joined in Arrow: no Python string per output path.
    name = pc.binary_join_element_wise(pa.array(chosen["sha256"], pa.string()), suffix, "")
    parts = [pa.array(splits, pa.string()), pa.array(chosen["label"], pa.string()), name]
    path = pc.binary_join_element_wise(dataset_dir.as_posix(), *parts, "/")
    rows.loc[chosen.index, "path"] = path.to_pandas().set_axis(chosen.index)


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


def known_failures(rows: pd.DataFrame) -> dict[str, list[str]]:
    """sha256 -> [status, error] of the images whose decoding failed, for the stamp."""
    failed = rows[rows["status"].isin(["corrupt", "unsupported"]) & rows["sha256"].notna()]
    return {
        sha: [status, error]
        for sha, status, error in zip(
            failed["sha256"], failed["status"], failed["error"], strict=True
        )
    }


def apply_known_failures(rows: pd.DataFrame, stamp: dict[str, Any]) -> None:
    """Mark rows whose bytes already failed to decode in an earlier run, so they aren't retried."""
    failed = stamp.get("failed") or {}
    hit = rows.index[(rows["status"] == "ok") & rows["sha256"].isin(list(failed))]
    if len(hit):
        found = [failed[sha] for sha in rows.loc[hit, "sha256"]]
        unplan(rows, hit, [s for s, _ in found], [e for _, e in found])


def record_rendered(rows: pd.DataFrame, positions: np.ndarray, done: pa.Table) -> None:
    """A rendered batch's outcome (render_batch's table for the rows at `positions`): the
    rows whose decoding failed take its status and leave the dataset."""
    failed, statuses, errors = failures(done)
    if statuses:
        unplan(rows, rows.index[positions[failed]], statuses, errors)


def unplan(rows: pd.DataFrame, where: Any, status: Any, error: Any) -> None:
    """Take the rows `where` selects out of the dataset: a failure status, no split, no path."""
    _mark(rows, where, status, error)
    rows.loc[where, "split"] = pd.NA
    rows.loc[where, "path"] = pd.NA


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
    dataset_dir: Path, splits: Sequence[str], classes: Sequence[str], keep: Iterable[str],
    aside: Path,
) -> tuple[int, list[Path]]:  # fmt: skip
    """Make every split hold every class folder (so Keras infers the same class list in each),
    delete our outputs not in `keep` (output paths: a set, or a column of a plan), and move
    any other file in a class folder (not ours: a user's) to `aside`. Returns (deleted, where
    the moved files went)."""
    kept = pa.array(list(keep) if isinstance(keep, set) else keep, pa.string())
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


def _unplanned(class_dir: Path, keep: pa.Array) -> tuple[list[Path], list[Path]]:
    """The files of a class folder not in `keep`: (our outputs, anyone else's files)."""
    # hidden: an interrupted write's temporary file, or the user's own
    found = [f for f in sorted(class_dir.iterdir()) if not f.name.startswith(".") and f.is_file()]
    planned = pc.is_in(pa.array([f.as_posix() for f in found], pa.string()), value_set=keep)
    ours, foreign = [], []
    for file, known in zip(found, planned.to_pylist(), strict=True):
        if known:
            continue
        mine = _OUTPUT_NAME.match(file.name) and made_by_us(file)
        (ours if mine else foreign).append(file)
    return ours, foreign
