"""prepare_dataset: raw class folders -> cleaned, resized, deduplicated train/val[/test] folders."""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from flows.gate.entry import gated_flow
from flows.gate.runners import machine_cores, task_runner_for, unwalked
from flows.params import PrepareParams
from storage.errors import ConfigError, DatasetError
from storage.layout import Layout, new_run_id
from storage.memory import release_unused_memory
from storage.parquet import read_table, replace_parts, write_batches
from tasks.prepare import columns, folders, plan, stamp
from tasks.prepare import render as pixels
from tasks.prepare import tasks as images
from tasks.runtime import Progress, logger

PAIR = ["source_path", "path"]  # a render item: where from, where to
MANIFEST_BATCH = 8192  # manifest rows built and written at a time
IN_FLIGHT = 8  # inspect batches submitted ahead of the one being collected (4 threads run them)


class PrepareResult(BaseModel):
    run_id: str
    dataset: str
    dataset_dir: str
    manifest_path: str
    class_names: list[str]
    image_size: int
    counts: dict[str, dict[str, int]] = Field(description="split -> class -> images")
    skipped: dict[str, int] = Field(description="status -> source files left out")
    sources: int = Field(description="Source files seen")
    rendered: int = Field(description="Images decoded and written by this run")
    reused: int = Field(description="Outputs already present from an earlier run")
    removed: int = Field(description="Outputs deleted because they are no longer planned")
    set_aside: list[str] = Field(
        default_factory=list,
        description="Files pixelpipe did not write, found in the dataset folders and moved"
        " under .set-aside/<run_id>/ (never deleted)",
    )
    warnings: list[str] = Field(default_factory=list)


# Threads only wait on file reads and on the process pool; a few keep both busy, and bound
# how many batches `.map` starts at once on a big folder.
@gated_flow(
    name="prepare-dataset",
    description="Clean, resize, deduplicate and split images.",
    task_runner=ThreadPoolTaskRunner(max_workers=4),
)
def prepare_dataset(params: PrepareParams) -> PrepareResult:
    run_id = params.run_id or new_run_id()
    layout = Layout.at(params.data_dir)
    dataset_dir, class_dirs = _resolve(params, layout)
    settings = pixels.RenderSettings(
        params.image_size, params.resize_mode, params.image_format, params.quality, params.resample
    )
    spec = plan.SplitSpec(
        params.seed,
        params.val_fraction,
        params.test_fraction,
        params.max_per_class,
        params.near_duplicate_distance if params.near_duplicates else None,
    )
    class_names = sorted(set(class_dirs.values()))
    files = plan.list_source_files(class_dirs)
    logger().info("%d source files in %d classes: %s", len(files), len(class_names), class_names)
    inspected = _inspect(files, params.batch_size)
    release_unused_memory()  # what the inspect threads freed, before the plan's peak
    excluded = _flagged(params.exclude_curation, layout) if params.exclude_curation else None
    rows = plan.plan(files, inspected, class_names, dataset_dir, spec, settings.suffix, excluded)
    del files, inspected  # the plan holds what is needed of them
    release_unused_memory()
    aside = dataset_dir / folders.ASIDE_DIR / run_id
    todo, moved = _pending(rows, dataset_dir, settings, params.force, aside)
    try:
        _render(rows, todo, settings, params)
    finally:
        pixels.shutdown_pool()

    counts = _counts(rows, spec.splits, class_names)
    if empty := _empty_splits(counts, spec):
        _write_manifest(rows, run_id, params.dataset, layout.root)  # the statuses say why
        raise DatasetError(_empty_message(empty, rows, run_id, dataset_dir))
    ok = rows["status"] == "ok"
    rendered = int(ok.to_numpy()[todo].sum())
    kept = int(ok.sum())
    removed, moved_unplanned = folders.sync_folders(
        dataset_dir, spec.splits, class_names, rows["path"], aside
    )
    moved += moved_unplanned
    release_unused_memory()  # what rendering and the folder sync freed, before the manifest's peak
    manifest = _write_manifest(rows, run_id, params.dataset, layout.root)
    skipped = {s: int(n) for s, n in sorted(rows["status"][~ok].value_counts().items())}
    warnings = _warn_moved(moved, dataset_dir) + _report(counts, skipped)
    stamp.write_stamp(dataset_dir, _stamp(run_id, settings, spec, class_names, counts, rows))
    return PrepareResult(
        run_id=run_id,
        dataset=params.dataset,
        dataset_dir=dataset_dir.as_posix(),
        manifest_path=manifest.as_posix(),
        class_names=class_names,
        image_size=params.image_size,
        counts=counts,
        skipped=skipped,
        sources=len(rows),
        rendered=rendered,
        reused=kept - rendered,
        removed=removed,
        set_aside=[p.as_posix() for p in moved],
        warnings=warnings,
    )


def _flagged(curation_run: str, layout: Layout) -> dict[str, str]:
    """sha256 -> why, of the images a curate_images run flagged; ConfigError for no such run."""
    rows = read_table("curation", data_dir=layout.root, run_id=curation_run)
    if rows.empty:
        raise ConfigError(f"no curation rows for run {curation_run!r}: run pixelpipe curate first")
    flagged = rows[rows["verdict"].isin(["off_topic", "suspect_label"])]
    return {
        sha: f"flagged by curation run {curation_run}: {group['verdict'].iloc[0]}"
        f" ({group['suggested_label'].iloc[0]})"
        for sha, group in flagged.groupby("sha256")
    }


def _resolve(params: PrepareParams, layout: Layout) -> tuple[Path, dict[Path, str]]:
    """The dataset folder and the source class folders; a ConfigError before any work."""
    dataset_dir = layout.dataset(params.dataset)
    source_root = layout.root / "raw"
    if params.source_dir:
        source_root = Path(params.source_dir).expanduser().resolve()
    class_dirs = plan.resolve_classes(source_root, params.labels)
    # Reading from the folder being written (or writing inside the sources) would feed the
    # outputs back in as sources on the next run.
    if source_root.is_relative_to(dataset_dir) or dataset_dir.is_relative_to(source_root):
        raise ConfigError(
            f"source folder {source_root} and dataset folder {dataset_dir} overlap:"
            " choose another --dataset or --source-dir"
        )
    return dataset_dir, class_dirs


def _pending(
    rows: pd.DataFrame, dataset_dir: Path, settings: pixels.RenderSettings, force: bool,
    aside: Path,
) -> tuple[np.ndarray, list[Path]]:  # fmt: skip
    """The positions of the kept rows whose output must be (re)made: missing, or not tagged as
    rendered by pixelpipe with these settings. A file at an output path that pixelpipe did not
    write is moved to `aside` first. Returns the positions and where the moved files went."""
    if force or not stamp.stamp_matches(dataset_dir, asdict(settings)):
        stamp.clear_stamp(dataset_dir)  # a run stopped half-way must not look finished
    else:
        plan.apply_known_failures(rows, stamp.read_stamp(dataset_dir) or {})
    ok = np.flatnonzero((rows["status"] == "ok").to_numpy())
    todo, found = [], []
    for chunk in np.array_split(ok, max(1, len(ok) // 1000)):  # a Python str per path of one
        paths = rows["path"].iloc[chunk].tolist()
        redo = [force or not pixels.made_with(p, settings) for p in paths]
        todo.append(chunk[redo])
        found += [Path(p) for p, r in zip(paths, redo, strict=True) if r and _foreign(p)]
    release_unused_memory()  # each chunk's paths, taken out of Arrow (~300 B an image at 100k)
    return np.concatenate(todo), folders.set_aside(dataset_dir, found, aside)


def _foreign(path: str) -> bool:
    """Whether a file pixelpipe did not write stands at this output path."""
    return os.path.isfile(path) and not pixels.made_by_us(path)


def _warn_moved(moved: list[Path], dataset_dir: Path) -> list[str]:
    """One warning (logged, returned) naming the files found that pixelpipe did not write."""
    if not moved:
        return []
    shown = ", ".join(p.relative_to(dataset_dir).as_posix() for p in moved[:5])
    more = f" and {len(moved) - 5} more" if len(moved) > 5 else ""
    warning = (
        f"moved {len(moved)} file(s) pixelpipe did not write out of the dataset folders:"
        f" {shown}{more}"
    )
    logger().warning(warning)
    return [warning]


def _inspect(files: pd.DataFrame, batch_size: int) -> Any:
    """Hash and read the header of every file, in cached batches run on threads; a few batches
    in flight at a time, so only their inputs and results are held, never the whole list's."""
    progress = Progress(len(files), f"inspecting {len(files)} images")
    keys = itertools.chain.from_iterable(  # Python objects for a batch's rows at a time
        files.iloc[i : i + batch_size][["source_path", "size", "mtime_ns"]].itertuples(
            index=False, name=None
        )
        for i in range(0, len(files), batch_size)
    )
    tables = []

    def batches() -> Iterator[PrefectFuture]:
        while batch := list(itertools.islice(keys, batch_size)):
            # The flow's own thread runner; a re-run still hits the cache (test_prepare_dataset).
            yield images.inspect_batch.submit(unwalked(batch, "threads"))

    for table in _in_flight(batches(), IN_FLIGHT):
        tables.append(table)
        progress.advance(table.num_rows)
    return columns.concat(tables)


def _in_flight(futures: Iterable[PrefectFuture], limit: int) -> Iterator[Any]:
    """Each future's result in submission order, submitting at most `limit` ahead (a future
    is dropped once its result is taken, so Prefect holds no finished result)."""
    pending: deque[PrefectFuture] = deque()
    for future in futures:
        pending.append(future)
        if len(pending) >= limit:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _render(
    rows: pd.DataFrame, todo: np.ndarray, settings: pixels.RenderSettings, params: PrepareParams
) -> None:
    """Render the rows at positions `todo` in batches on the chosen runner; a row whose
    decoding failed takes the status it found, and leaves the dataset.

    processes: this process's pool of `workers` processes, two batches in flight so it never
    idles. threads: `workers` threads, a batch each. dask: two batches per worker process in
    flight (the scheduler balances them).
    """
    workers = params.workers or machine_cores()
    pooled = params.runner == "processes"
    logger().info(
        "rendering %d image(s): runner %s, %d worker(s)", len(todo), params.runner, workers
    )
    progress = Progress(len(todo), f"rendering {len(todo)} images")
    positions = [todo[i : i + params.batch_size] for i in range(0, len(todo), params.batch_size)]
    threads = 2 if pooled else workers
    runner = task_runner_for(
        "threads" if pooled else params.runner, params.dask_address, threads=threads
    )
    with runner:
        futures = (
            runner.submit(
                images.render_batch,
                {
                    "items": unwalked(
                        list(zip(*(rows[c].iloc[batch] for c in PAIR), strict=True)), params.runner
                    ),
                    "settings": settings,
                    "workers": workers if pooled else 1,
                },
            )
            for batch in positions
        )
        plan.record_rendered(
            rows, _advancing(positions, _in_flight(futures, 2 * threads), progress)
        )


def _advancing(
    positions: list[np.ndarray], results: Iterator[Any], progress: Progress
) -> Iterator[tuple[np.ndarray, Any]]:
    """(positions, result) of each batch, advancing the progress bar as each one comes."""
    for batch, done in zip(positions, results, strict=True):
        yield batch, done
        progress.advance(len(batch))


def _write_manifest(rows: pd.DataFrame, run_id: str, dataset: str, root: Path) -> Path:
    """The plan as dataset_manifest rows (run id, dataset, the source URL, the hash as hex),
    written MANIFEST_BATCH rows at a time: only a batch's manifest columns exist at once."""
    urls = columns.SourceUrls.of(root, columns.arrow_of(rows["sha256"]))
    release_unused_memory()  # the scrape_manifest's pages read for the lookup
    batches = (
        columns.manifest_frame(
            rows.iloc[i : i + MANIFEST_BATCH], run_id=run_id, dataset=dataset,
            source_url=urls.batch(i, i + MANIFEST_BATCH),
        )
        for i in range(0, len(rows), MANIFEST_BATCH)
    )  # fmt: skip
    path = write_batches("dataset_manifest", batches, run_id=run_id, data_dir=root)
    # A re-run of this run id on another day replaces the older partition's rows.
    replace_parts("dataset_manifest", run_id=run_id, written=[path], data_dir=root)
    return path


def _counts(
    rows: pd.DataFrame, splits: tuple[str, ...], class_names: list[str]
) -> dict[str, dict[str, int]]:
    counts = {split: dict.fromkeys(class_names, 0) for split in splits}
    ok = (rows["status"] == "ok").to_numpy()  # two columns of the kept rows, not all of them
    for (split, label), n in rows.loc[ok, ["split", "label"]].value_counts().items():
        counts[split][label] = int(n)
    return counts


def _empty_splits(counts: dict[str, dict[str, int]], spec: plan.SplitSpec) -> list[str]:
    """The splits training needs that hold no image: train, and val when val_fraction > 0."""
    needed = ["train"] + (["val"] if spec.val_fraction > 0 else [])
    return [s for s in needed if not sum(counts.get(s, {}).values())]


def _empty_message(empty: list[str], rows: pd.DataFrame, run_id: str, dataset_dir: Path) -> str:
    statuses = sorted(rows["status"].value_counts().items())
    found = ", ".join(f"{s} {n}" for s, n in statuses) or "no source files"
    return (
        f"no usable image for {' and '.join(f'{s}/' for s in empty)} of {dataset_dir}"
        f" ({len(rows)} source file(s): {found}); no output was removed. Add images or"
        f" change the fractions; each file's status is in dataset_manifest run {run_id}"
    )


def _report(counts: dict[str, dict[str, int]], skipped: dict[str, int]) -> list[str]:
    """Log the images per class per split and the files left out; return (and log) a warning
    for each thin cell and for images found in several classes."""
    log = logger()
    if skipped:
        log.info("left out: %s (see the status column of dataset_manifest)", skipped)
    splits = list(counts)
    classes = list(next(iter(counts.values()), {}))
    width = max([5, *map(len, classes)])
    lines = [f"{'class':<{width}} " + " ".join(f"{s:>6}" for s in splits)]
    lines += [f"{c:<{width}} " + " ".join(f"{counts[s][c]:>6}" for s in splits) for c in classes]
    log.info("images per class and split:\n%s", "\n".join(lines))
    warnings = [
        f"class {c!r} has only {counts[s][c]} image(s) in {s}/ (fewer than"
        f" {plan.MIN_PER_SPLIT}): its {s} numbers will be noise; add images or change the"
        " fractions"
        for s in splits
        for c in classes
        if counts[s][c] < plan.MIN_PER_SPLIT
    ]
    if skipped.get("conflict"):
        warnings.append(
            f"{skipped['conflict']} file(s) hold an image that is also in another class: all"
            " copies left out (status conflict); file each image under one class"
        )
    for warning in warnings:
        log.warning(warning)
    return warnings


def _stamp(
    run_id: str,
    settings: pixels.RenderSettings,
    spec: plan.SplitSpec,
    class_names: list[str],
    counts: dict[str, dict[str, int]],
    rows: pd.DataFrame,
) -> dict[str, Any]:
    """dataset.json: what the folder holds and how it was made (read back by the next run)."""
    return {
        "run_id": run_id,
        "render": asdict(settings),
        "split": asdict(spec),
        "class_names": class_names,
        "counts": counts,
        "failed": stamp.known_failures(rows),
    }
