"""prepare_dataset: raw class folders -> cleaned, resized, deduplicated train/val[/test] folders."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from flows.gate.entry import gated_flow
from flows.gate.runners import machine_cores, task_runner_for
from flows.params import PrepareParams
from storage.errors import ConfigError, DatasetError
from storage.layout import Layout, new_run_id
from storage.parquet import read_table, replace_parts, write_table
from tasks.prepare import plan
from tasks.prepare import render as pixels
from tasks.prepare import tasks as images
from tasks.runtime import Progress, logger


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
    infos = _inspect(files, params.batch_size)
    excluded = _flagged(params.exclude_curation, layout) if params.exclude_curation else None
    rows = plan.plan(files, infos, class_names, dataset_dir, spec, settings.suffix, excluded)
    aside = dataset_dir / plan.ASIDE_DIR / run_id
    todo, moved = _pending(rows, dataset_dir, settings, params.force, aside)
    try:
        _render(todo, settings, params)
    finally:
        pixels.shutdown_pool()

    counts = _counts(rows, spec.splits, class_names)
    if empty := _empty_splits(counts, spec):
        _write_manifest(rows, run_id, params.dataset, layout.root)  # the statuses say why
        raise DatasetError(_empty_message(empty, rows, run_id, dataset_dir))
    kept = {r["path"] for r in rows if r["status"] == "ok"}
    rendered = sum(1 for r in todo if r["status"] == "ok")
    removed, moved_unplanned = plan.sync_folders(dataset_dir, spec.splits, class_names, kept, aside)
    moved += moved_unplanned
    manifest = _write_manifest(rows, run_id, params.dataset, layout.root)
    skipped = dict(sorted(Counter(r["status"] for r in rows if r["status"] != "ok").items()))
    warnings = _warn_moved(moved, dataset_dir) + _report(counts, skipped)
    plan.write_stamp(dataset_dir, _stamp(run_id, settings, spec, class_names, counts, rows))
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
        reused=len(kept) - rendered,
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
    rows: list[dict[str, Any]],
    dataset_dir: Path,
    settings: pixels.RenderSettings,
    force: bool,
    aside: Path,
) -> tuple[list[dict[str, Any]], list[Path]]:
    """The kept rows whose output must be (re)made: missing, or not tagged as rendered by
    pixelpipe with these settings. A file at an output path that pixelpipe did not write is
    moved to `aside` first. Returns the rows and where the moved files went."""
    if force or not plan.stamp_matches(dataset_dir, asdict(settings)):
        plan.clear_stamp(dataset_dir)  # a run stopped half-way must not look finished
    else:
        plan.apply_known_failures(rows, plan.read_stamp(dataset_dir) or {})
    todo = [
        r
        for r in rows
        if r["status"] == "ok" and (force or not pixels.made_with(Path(r["path"]), settings))
    ]
    found = [Path(r["path"]) for r in todo if Path(r["path"]).is_file()]
    return todo, plan.set_aside(dataset_dir, [p for p in found if not pixels.made_by_us(p)], aside)


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


def _inspect(files: list[plan.SourceFile], batch_size: int) -> list[dict[str, Any]]:
    """Hash and read the header of every file, in cached batches run on threads."""
    keys = [(f.path, f.size, f.mtime_ns) for f in files]
    batches = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
    futures = images.inspect_batch.map(batches) if batches else []
    progress = Progress(len(keys), f"inspecting {len(keys)} images")
    infos = []
    for future in futures:
        infos += future.result()
        progress.advance(len(infos) - progress.done)
    return infos


def _render(
    todo: list[dict[str, Any]], settings: pixels.RenderSettings, params: PrepareParams
) -> None:
    """Render the pending rows in batches on the chosen runner; each row's status becomes what
    decoding found.

    processes: this process's pool of `workers` processes, two batches in flight so it never
    idles. threads: `workers` threads, a batch each. dask: every batch sent to the cluster at
    once, one per worker process at a time (the scheduler balances them).
    """
    workers = params.workers or machine_cores()
    pooled = params.runner == "processes"
    log = logger()
    log.info("rendering %d image(s): runner %s, %d worker(s)", len(todo), params.runner, workers)
    progress = Progress(len(todo), f"rendering {len(todo)} images")
    size = params.batch_size
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    runner = task_runner_for(
        "threads" if pooled else params.runner,
        params.dask_address,
        threads=2 if pooled else workers,
    )
    with runner:
        futures = [
            runner.submit(
                images.render_batch,
                {
                    "items": [(r["source_path"], r["path"]) for r in batch],
                    "settings": settings,
                    "workers": workers if pooled else 1,
                },
            )
            for batch in batches
        ]
        for future, batch in zip(futures, batches, strict=True):
            for row, (status, error) in zip(batch, future.result(), strict=True):
                if status != "ok":
                    row.update(status=status, error=error, split=None, path=None)
            progress.advance(len(batch))


def _write_manifest(rows: list[dict[str, Any]], run_id: str, dataset: str, root: Path) -> Path:
    urls = _source_urls(root)
    for row in rows:
        row.update(run_id=run_id, dataset=dataset, source_url=urls.get(row["sha256"]))
    path = write_table("dataset_manifest", rows, run_id=run_id, data_dir=root)
    # A re-run of this run id on another day replaces the older partition's rows.
    replace_parts("dataset_manifest", run_id=run_id, written=[path], data_dir=root)
    return path


def _source_urls(root: Path) -> dict[str, str]:
    """sha256 -> URL of the images scrape_images downloaded into this data root."""
    scraped = read_table(
        "scrape_manifest", data_dir=root, columns=["sha256", "url", "status"], on_damaged="skip"
    )
    scraped = scraped[(scraped["status"] == "ok") & scraped["sha256"].notna()]
    return dict(zip(scraped["sha256"], scraped["url"], strict=True))


def _counts(
    rows: list[dict[str, Any]], splits: tuple[str, ...], class_names: list[str]
) -> dict[str, dict[str, int]]:
    counts = {split: dict.fromkeys(class_names, 0) for split in splits}
    for row in rows:
        if row["status"] == "ok":
            counts[row["split"]][row["label"]] += 1
    return counts


def _empty_splits(counts: dict[str, dict[str, int]], spec: plan.SplitSpec) -> list[str]:
    """The splits training needs that hold no image: train, and val when val_fraction > 0."""
    needed = ["train"] + (["val"] if spec.val_fraction > 0 else [])
    return [s for s in needed if not sum(counts.get(s, {}).values())]


def _empty_message(
    empty: list[str], rows: list[dict[str, Any]], run_id: str, dataset_dir: Path
) -> str:
    statuses = Counter(r["status"] for r in rows)
    found = ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())) or "no source files"
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
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """dataset.json: what the folder holds and how it was made (read back by the next run)."""
    return {
        "run_id": run_id,
        "render": asdict(settings),
        "split": asdict(spec),
        "class_names": class_names,
        "counts": counts,
        "failed": plan.known_failures(rows),
    }
