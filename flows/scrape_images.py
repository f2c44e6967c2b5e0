"""scrape_images: pages (every image on them) or a URL list -> images downloaded, validated,
deduplicated and recorded."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from pydantic import BaseModel, Field

from flows.gate.entry import gated_flow
from flows.gate.runners import machine_cores, task_runner_for, unwalked
from flows.params import ScrapeParams
from storage.layout import Layout, new_run_id, safe_name
from storage.parquet import part_name, write_table
from storage.schemas import SCRAPE_STATUSES
from tasks.runtime import Progress, logger
from tasks.scrape.fetch import check_proxy
from tasks.scrape.manifest import manifest_row, run_reasons
from tasks.scrape.politeness import create_host_limits, limit_names
from tasks.scrape.settings import ScrapeSettings
from tasks.scrape.stored import KEPT, StoredIndex
from tasks.scrape.tasks import (
    ShardOutcome,
    clear_parts,
    dedupe_shards,
    download_shard,
    find_image_urls,
)
from tasks.scrape.url_list import ListTriage, check_columns, list_rows_at_most, read_list

LIST_GROUP = "list"  # the part group of a URL list with a label per row


class ScrapeResult(BaseModel):
    run_id: str
    label: str
    manifest_path: str = Field(description="The scrape_manifest partition of this run's files")
    manifest_files: list[str] = Field(
        description="This run's scrape_manifest files for the label: pages and skipped URLs"
        " (part <label>-0000), then one per download shard"
    )
    raw_dir: str = Field(description="raw/<label>/ folder the images are stored in")
    pages: int = Field(description="Pages read (rel=next pages included)")
    candidates: int = Field(description="Distinct image URLs found on the pages")
    stored: int = Field(description="Images kept by this run (rows with status ok)")
    counts: dict[str, int] = Field(description="Manifest rows per status")
    labels: list[str] = Field(
        default_factory=list, description="Labels of the URLs this run handled (raw/<label>/)"
    )
    reasons: dict[str, list[tuple[str, int]]] = Field(
        default_factory=dict,
        description="Status other than ok -> its most common errors with their row counts",
    )


def _skip_rows(
    candidates: list[dict], index: StoredIndex, max_images: int | None, run_id: str, label: str
) -> tuple[list[dict], list[dict]]:
    """Split candidates into (to download, skipped rows): already stored, or past max_images."""
    todo, skipped = [], []
    stored = index.stored((label, c["url"]) for c in candidates[:max_images])
    for i, c in enumerate(candidates):
        base = (run_id, label, c["page_url"], c["url"], "skipped")
        if max_images is not None and i >= max_images:
            skipped.append(
                manifest_row(*base, found_in=c["found_in"], error=f"beyond max_images={max_images}")
            )
        elif (old := stored.get((label, c["url"]))) is not None:
            kept = {k: old[k] for k in KEPT}
            error = f"already stored by run {old['run_id']}"
            skipped.append(manifest_row(*base, found_in=c["found_in"], error=error, **kept))
        else:
            todo.append(c)
    return todo, skipped


@dataclass(frozen=True)
class _Run:
    """Where one run writes: its id, manifest partition, data root and part group."""

    run_id: str
    run_date: date
    data_dir: str
    group: str  # the label, or LIST_GROUP for a URL list with a label per row
    raw_dir: Path


@dataclass
class _Found:
    """What a source gave: parts written by the flow, download shards, counts."""

    files: list[str] = field(default_factory=list)
    shards: list[ShardOutcome] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    pages: int = 0
    candidates: int = 0
    labels: set[str] = field(default_factory=set)


@gated_flow(name="scrape-images", description="Find, download, validate and dedupe page images.")
def scrape_images(params: ScrapeParams) -> ScrapeResult:
    run_id = params.run_id or new_run_id()
    safe_name(run_id, "run id")
    layout = Layout.at(params.data_dir)
    # Layout.raw refuses a label that is not one safe folder name; a list's own are checked
    # row by row.
    raw_dir = layout.raw(params.label) if params.label else layout.root / "raw"
    config = params.settings()
    check_proxy(config)  # before any work: a refused proxy fails the run, not every URL
    if params.url_list:  # a missing column fails here, naming the columns found
        check_columns(params.url_list, params.url_column, _label_column(params))
    run = _Run(
        run_id, datetime.now(UTC).date(), layout.root.as_posix(), params.label or LIST_GROUP,
        raw_dir,
    )  # fmt: skip
    with TemporaryDirectory(prefix="pixelpipe-scrape-") as tmp:
        index_path = Path(tmp) / "stored.sqlite"
        with StoredIndex.build(index_path, layout.root, run_id, params.label) as index:
            source = _from_list if params.url_list else _from_pages
            found = source(params, config, run, index)
        found.counts.update(
            dedupe_shards(
                found.shards, str(index_path), run_id=run_id, run_date=run.run_date,
                data_dir=run.data_dir,
            )
        )  # fmt: skip
    written = found.files + [s.path for s in found.shards]
    # Only now that every new part is written: a crash before this leaves the old rows.
    clear_parts(run.data_dir, run_id, run.group, written=written)
    counts = found.counts
    result = ScrapeResult(
        run_id=run_id,
        label=run.group,
        manifest_path=(layout.table_dir("scrape_manifest") / f"run_date={run.run_date}").as_posix(),
        manifest_files=written,
        raw_dir=raw_dir.as_posix(),
        pages=found.pages,
        candidates=found.candidates,
        stored=counts["ok"],
        counts={s: counts[s] for s in SCRAPE_STATUSES if counts[s]},
        labels=sorted(found.labels),
        reasons=run_reasons(run.data_dir, run_id, params.label),
    )
    logger().info("scrape %s: %s", run_id, result.counts)
    return result


def _label_column(params: ScrapeParams) -> str | None:
    """The list's label column, unless one label is given for every row."""
    return None if params.label else params.label_column


def _from_pages(
    params: ScrapeParams, config: ScrapeSettings, run: _Run, index: StoredIndex
) -> _Found:
    """Read the pages, record what is settled without a download, download the rest."""
    found = find_image_urls(
        params.pages, run.run_id, run.group, config, params.follow_pages, params.max_images,
        max_candidates=params.max_candidates,
    )  # fmt: skip
    candidates = found["candidates"]
    todo, skipped = _skip_rows(candidates, index, params.max_images, run.run_id, run.group)
    logger().info("%d image URL(s), %d to download", len(candidates), len(todo))
    own = found["rows"] + skipped
    result = _Found(pages=found["pages"], candidates=len(candidates), labels={run.group})
    result.counts.update(r["status"] for r in own)
    if own:
        path = write_table(
            "scrape_manifest", own, run_id=run.run_id, data_dir=run.data_dir,
            run_date=run.run_date, part=part_name(run.group, 0),
        )  # fmt: skip
        result.files.append(path.as_posix())
    size = params.shard_size  # few enough tasks, big enough to keep a worker's threads busy
    batches = ((todo[i : i + size], []) for i in range(0, len(todo), size))
    shown = f"Downloading {len(todo)} image(s) for {run.group!r}"
    result.shards = _download(params, config, run, batches, len(todo), shown)
    return result


def _from_list(
    params: ScrapeParams, config: ScrapeSettings, run: _Run, index: StoredIndex
) -> _Found:
    """Stream the URL list a shard at a time: each batch's settled rows and downloads go to
    one shard's part, so the flow holds a few batches whatever the list's length."""
    triage = ListTriage(index, run.run_id, params.label, params.url_list, params.max_images)
    rows = read_list(params.url_list, params.url_column, _label_column(params), params.shard_size)
    result = _Found()
    most = list_rows_at_most(params.url_list)
    shown = f"Downloading the list's {most} row(s) at most"
    result.shards = _download(params, config, run, map(triage.split, rows), most, shown)
    result.candidates, result.labels = triage.listed, triage.labels
    logger().info("URL list %s: %d row(s) with a URL and label", params.url_list, triage.listed)
    return result


def _download(
    params: ScrapeParams,
    config: ScrapeSettings,
    run: _Run,
    batches: Iterable[tuple[list[dict], list[dict]]],
    total: int,
    description: str,
) -> list[ShardOutcome]:
    """Download (candidates, settled rows) batches as shards on the chosen runner, in order;
    each writes its own part. At most `in_flight` shards are submitted and not yet done, so
    a list of any length is read only as fast as it is downloaded. The run's one progress
    artifact counts the `total` rows (an upper bound for a list) as their shards end.

    threads: one shard at a time, as each already downloads `concurrency` URLs at once with
    its own per-host slots. processes/dask: shards in parallel, `concurrency` each. On every
    runner a shard holds its hosts' Prefect global concurrency limits while it runs, so
    per_host holds across workers and across runs scraping the same host.
    """
    limited: set[str] = set()
    in_flight = 2 if params.runner == "threads" else 2 * machine_cores()
    progress = Progress(total, description, artifact=total > 0, bar=False)
    with task_runner_for(params.runner, params.dask_address, threads=1) as runner:
        pending: deque = deque()  # (future, rows in its batch)
        done: list[ShardOutcome] = []

        def collect() -> None:
            future, rows = pending.popleft()
            done.append(future.result())
            progress.advance(rows)

        for n, (todo, decided) in enumerate(batches, start=1):
            new = [c["url"] for c in todo if not limited.issuperset(limit_names([c["url"]]))]
            if new:  # each host's limit once per run, before its first shard
                limited.update(create_host_limits(new, params.per_host))
            pending.append((
                runner.submit(
                    download_shard,
                    {
                        "candidates": unwalked(todo, params.runner), "run_id": run.run_id,
                        "label": params.label, "raw_dir": str(run.raw_dir), "config": config,
                        "min_size": params.min_size, "part": part_name(run.group, n),
                        "run_date": run.run_date, "data_dir": run.data_dir,
                        "lease_s": params.host_lease_s, "decided": unwalked(decided, params.runner),
                    },
                ),
                len(todo) + len(decided),
            ))  # fmt: skip
            while len(pending) >= in_flight:
                collect()
        while pending:
            collect()
    progress.finish()
    return done
