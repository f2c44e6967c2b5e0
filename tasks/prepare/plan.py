"""Which source files go where in a prepared dataset: classes, dedupe (exact and near), cap,
split, folder upkeep."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from storage.errors import ConfigError
from storage.files import is_image_name
from storage.layout import safe_name
from storage.memory import release_unused_memory
from storage.schemas import DATASET_STATUSES
from tasks.prepare import columns
from tasks.prepare.columns import COLOURS, failures
from tasks.prepare.near_duplicates import MIN_HASH_BITS, image_groups

# Extensions decoded (any case); other files in a class folder become `unsupported` rows.
SPLITS = ("train", "val", "test")
MIN_PER_SPLIT = 5  # below this many images of a class in a split, its metrics are noise
_FILES = pa.schema(
    [("source_path", pa.string()), ("label", pa.string()), ("size", pa.int64()),
     ("mtime_ns", pa.int64())]
)  # fmt: skip
_TEXT = pa.schema([("source_path", pa.large_string()), ("label", pa.large_string())])
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
                # POSIX form as a string: a Path per file would intern its name for good
                yield path.replace(os.sep, "/"), os.stat(path)


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

    The state is decided as numpy codes (status, split, the row whose sha256 keys a group) and
    the text columns are built once at the end, in Arrow: no Python object per row.
    """
    listing = pa.Table.from_pandas(files[_TEXT.names], schema=_TEXT, preserve_index=False)
    sha, paths = inspected.column("sha256"), listing.column("source_path")
    outcome = _base_outcomes(paths, inspected)
    labels, label_names = columns.codes(listing.column("label"))
    if excluded:
        hit = np.flatnonzero(
            (outcome.status == _OK) & _is_in(sha, list(excluded)).to_numpy(zero_copy_only=False)
        )
        why = [excluded[s] for s in sha.take(pa.array(hit)).to_pylist()]
        outcome.mark(hit, "excluded_by_curation", why)
    names = label_names.to_pylist()
    unique = _dedupe(outcome, columns.same_codes(sha), labels, names, paths)
    group = np.full(len(labels), -1, np.int64)  # the row whose sha256 names each row's group
    group[unique] = unique
    distance = spec.near_duplicate_distance
    _group_near_duplicates(outcome, group, unique, inspected, distance, labels, names, paths)
    kept = unique[outcome.status[unique] == _OK]
    split = _cap_and_split(outcome, group, kept, labels, sha, spec)
    release_unused_memory()  # what grouping freed (NumPy temporaries), before the columns' peak
    return _frame(
        files, inspected, listing, group, outcome, split, class_names, dataset_dir, suffix
    )


_OK = 0  # the code of "ok": the first of DATASET_STATUSES
_SPLIT_NAMES = pa.array(SPLITS, pa.large_string())


def _is_in(values: pa.ChunkedArray, wanted: list[str]) -> pa.ChunkedArray:
    return pc.fill_null(pc.is_in(values, value_set=pa.array(wanted, pa.string())), False)


def _base_outcomes(paths: pa.ChunkedArray, inspected: pa.Table) -> columns.Outcomes:
    """Each file's status from its inspection (ok, or the failure it found: corrupt unless
    said otherwise), then `unsupported` for a file whose extension is not an image's."""
    error = inspected.column("error").combine_chunks()
    found = pc.coalesce(inspected.column("status"), "corrupt").combine_chunks()
    status = pc.if_else(pc.is_null(error), "ok", found)
    outcome = columns.Outcomes(DATASET_STATUSES, status, error)
    unsupported = ~np.fromiter((is_image_name(p) for p in _texts(paths)), bool, len(paths))
    if unsupported.any():
        where = np.flatnonzero(unsupported)
        why = [
            f"not an image file extension: {os.path.splitext(p)[1]!r}" for p in _texts(paths, where)
        ]
        outcome.mark(where, "unsupported", why)
    return outcome


def _dedupe(
    outcome: columns.Outcomes, shas: np.ndarray, labels: np.ndarray, label_names: list[str],
    paths: pa.ChunkedArray,
) -> np.ndarray:  # fmt: skip
    """Mark `conflict` and `duplicate` copies; return the positions of the one kept copy of
    each ok image, in row order."""
    ok = np.flatnonzero((outcome.status == _OK) & (shas >= 0))
    pairs = np.unique(shas[ok] * max(1, len(label_names)) + labels[ok])
    classes = np.bincount(pairs // max(1, len(label_names)), minlength=shas.max(initial=-1) + 1)
    clash, single = ok[classes[shas[ok]] > 1], ok[classes[shas[ok]] == 1]
    if len(clash):
        classes_of: dict[int, set[str]] = {}
        for code, label in zip(shas[clash].tolist(), labels[clash].tolist(), strict=True):
            classes_of.setdefault(code, set()).add(label_names[label])
        why = {c: "same image in classes " + ", ".join(sorted(n)) for c, n in classes_of.items()}
        outcome.mark(clash, "conflict", [why[c] for c in shas[clash].tolist()])
    _, first = np.unique(shas[single], return_index=True)
    keep = np.zeros(len(single), bool)
    keep[first] = True
    copies = single[~keep]
    if len(copies):
        source = np.full(shas.max() + 1, -1, np.int64)
        source[shas[single[keep]]] = single[keep]
        origin = paths.take(pa.array(source[shas[copies]])).cast(pa.string())
        why = pc.binary_join_element_wise("same bytes as ", origin, "")
        outcome.mark(copies, "duplicate", why)
    return single[keep]


def _group_near_duplicates(
    outcome: columns.Outcomes, group: np.ndarray, unique: np.ndarray, inspected: pa.Table,
    distance: int | None, labels: np.ndarray, label_names: list[str], paths: pa.ChunkedArray,
) -> None:  # fmt: skip
    """Point the `group` of each near-duplicate at the row with the group's smallest sha256
    (a lone image keeps its own); a group spanning classes becomes `conflict`, every member.
    Reads the phash, phash_centre and mean colour columns of the rows at `unique`."""
    picked = pa.array(unique)
    phash = pc.fill_null(inspected.column("phash").take(picked), 0).to_numpy()
    colours = np.stack(
        [inspected.column(c).take(picked).to_numpy() for c in COLOURS], axis=1
    ).astype(np.float32)
    usable = (np.bitwise_count(phash) >= MIN_HASH_BITS) & ~np.isnan(colours).any(axis=1)
    hashed = unique[usable]
    if distance is None or len(hashed) < 2:
        return
    centre = pc.fill_null(inspected.column("phash_centre").take(pa.array(hashed)), 0).to_numpy()
    hashes = np.concatenate([phash[usable], centre])
    components = image_groups(hashes, np.concatenate([colours[usable]] * 2), distance, len(hashed))
    joined = np.bincount(components)[components] > 1
    order = np.argsort(components[joined], kind="stable")  # members stay in row order
    members, keys = hashed[joined][order], components[joined][order]
    sha = inspected.column("sha256")
    for group_members in np.split(members, np.flatnonzero(np.diff(keys)) + 1):
        if len(group_members):
            _join(outcome, group, group_members, sha, labels, label_names, paths)


def _join(
    outcome: columns.Outcomes, group: np.ndarray, members: np.ndarray, sha: pa.ChunkedArray,
    labels: np.ndarray, label_names: list[str], paths: pa.ChunkedArray,
) -> None:  # fmt: skip
    """One near-duplicate group (positions, in row order): its key, and `conflict` for all
    when it spans classes."""
    shas = sha.take(pa.array(members)).to_pylist()
    group[members] = members[min(range(len(shas)), key=shas.__getitem__)]
    classes = labels[members].tolist()
    if len(set(classes)) < 2:
        return
    names = ", ".join(sorted({label_names[c] for c in classes}))
    sources = paths.take(pa.array(members)).to_pylist()
    errors = []
    for label in classes:
        others = [p for p, c in zip(sources, classes, strict=True) if c != label][:3]
        errors.append(f"near-duplicate of {', '.join(others)} (classes {names})")
    outcome.mark(members, "conflict", errors)


def _texts(values: pa.ChunkedArray, positions: np.ndarray | None = None) -> Iterator[str]:
    """The values (at `positions`) as Python strings, a few thousand alive at a time."""
    for i in range(0, len(values) if positions is None else len(positions), _LIST_CHUNK):
        if positions is None:
            yield from values.slice(i, _LIST_CHUNK).to_pylist()
        else:
            yield from values.take(pa.array(positions[i : i + _LIST_CHUNK])).to_pylist()


def _cap_and_split(
    outcome: columns.Outcomes, group: np.ndarray, kept: np.ndarray, labels: np.ndarray,
    sha: pa.ChunkedArray, spec: SplitSpec,
) -> np.ndarray:  # fmt: skip
    """`capped` for the kept rows over max_per_class; the split of the others (an index into
    SPLITS per row, -1 for a row left out)."""
    if spec.max_per_class:
        # The cap keeps the images with the smallest seeded hash: deterministic, and drawn
        # independently of the split hash, so capping doesn't empty val/ first.
        cap = np.fromiter(
            (unit_hash("cap", spec.seed, s) for s in _texts(sha, kept)), np.float64, len(kept)
        )
        order = np.lexsort((cap, labels[kept]))
        ranked = labels[kept][order]
        rank = np.arange(len(order)) - np.searchsorted(ranked, ranked)
        over = np.sort(kept[order][rank >= spec.max_per_class])
        if len(over):
            outcome.mark(over, "capped", f"over max_per_class={spec.max_per_class}")
        kept = kept[outcome.status[kept] == _OK]
    # The group's key: near-duplicates land in one split (a lone image's key is its sha256).
    split = np.full(len(group), -1, np.int8)
    split[kept] = np.fromiter(
        (SPLITS.index(split_of(key, spec)) for key in _texts(sha, group[kept])),
        np.int8,
        len(kept),
    )
    return split


def _frame(
    files: pd.DataFrame, inspected: pa.Table, listing: pa.Table, group: np.ndarray,
    outcome: columns.Outcomes, split: np.ndarray, class_names: Sequence[str],
    dataset_dir: Path, suffix: str,
) -> pd.DataFrame:  # fmt: skip
    """The plan's columns, each built once from its codes: the text ones in Arrow as large
    strings (what pandas keeps, so no column is copied again), the output path computed for
    every row at once (null where the row has no split)."""
    sha = inspected.column("sha256").cast(pa.large_string())
    split_name = columns.scatter(_SPLIT_NAMES, split.astype(np.int64))
    name = pc.binary_join_element_wise(sha, _large(suffix), _large(""))
    path = pc.binary_join_element_wise(
        _large(dataset_dir.as_posix()), split_name, listing.column("label"), name, _large("/")
    )
    del name
    names = pa.array(list(class_names), pa.large_string())
    label_index = pc.index_in(listing.column("label"), value_set=names)
    built = {
        "source_path": files["source_path"],
        "label": files["label"],
        "label_index": label_index.to_numpy().astype(np.int32),
        "sha256": _text(sha),
        **{c: inspected.column(c).to_pandas(types_mapper=_NULLABLE.get).array
           for c in ("width", "height", "phash")},
        "near_duplicate_group": _text(columns.scatter(sha, group)),
        **{c: inspected.column(c).to_numpy() for c in ("brightness", "contrast")},
        "status": _text(outcome.status_column()),
        "error": _text(outcome.error_column()),
        "split": _text(split_name),
        "path": _text(path),
    }  # fmt: skip
    return pd.DataFrame(built, index=files.index)


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _text(values: pa.Array | pa.ChunkedArray) -> Any:
    return values.to_pandas().array


def apply_known_failures(rows: pd.DataFrame, stamp: dict[str, Any]) -> None:
    """Mark rows whose bytes already failed to decode in an earlier run, so they aren't retried."""
    failed = stamp.get("failed") or {}
    hit = rows.index[(rows["status"] == "ok") & rows["sha256"].isin(list(failed))]
    if len(hit):
        found = [failed[sha] for sha in rows.loc[hit, "sha256"]]
        unplan(rows, hit, [s for s, _ in found], [e for _, e in found])


def record_rendered(rows: pd.DataFrame, rendered: Iterable[tuple[np.ndarray, pa.Table]]) -> None:
    """The rendered batches' outcomes, (positions, render_batch's table) pairs: the rows whose
    decoding failed take its status and leave the dataset, all in one assignment."""
    where, statuses, errors = [], [], []
    for positions, done in rendered:
        failed, status, error = failures(done)
        where.append(positions[failed])
        statuses += status
        errors += error
    if statuses:
        unplan(rows, rows.index[np.concatenate(where)], statuses, errors)


def unplan(rows: pd.DataFrame, where: Any, status: Any, error: Any) -> None:
    """Take the rows `where` selects out of the dataset: a failure status, no split, no path.
    Each assignment copies its whole column (pandas 3, Arrow strings): call it once a run."""
    for column, value in (("status", status), ("error", error), ("split", pd.NA), ("path", pd.NA)):
        rows.loc[where, column] = value
