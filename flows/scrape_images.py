"""scrape_images: pages -> every image on them, downloaded, validated, deduplicated, recorded."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from flows.gate.policy import enforce_policy
from flows.gate.runners import task_runner_for
from flows.params import ScrapeParams
from storage.layout import Layout, new_run_id, safe_name
from storage.parquet import read_table, write_table
from storage.schemas import SCRAPE_STATUSES
from tasks.runtime import logger
from tasks.scrape.fetch import FetchConfig, check_proxy
from tasks.scrape.manifest import manifest_row, status_reasons
from tasks.scrape.politeness import create_host_limits
from tasks.scrape.tasks import clear_parts, dedupe_shards, download_shard, find_image_urls

_KEPT = ("sha256", "path", "width", "height", "format", "bytes")


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
    reasons: dict[str, list[tuple[str, int]]] = Field(
        default_factory=dict,
        description="Status other than ok -> its most common errors with their row counts",
    )


def fetch_config(params: ScrapeParams) -> FetchConfig:
    return FetchConfig(
        user_agent=params.user_agent,
        timeout=params.timeout,
        retries=params.retries,
        backoff=params.backoff,
        max_bytes=params.max_bytes,
        concurrency=params.concurrency,
        per_host=params.per_host,
        respect_robots=params.respect_robots,
        allow_private_networks=params.allow_private_networks,
        deadline=params.deadline,
        proxy=params.proxy,
        trust_env=params.trust_env,
        respect_x_robots_tag=params.respect_x_robots_tag,
        max_pixels=params.max_pixels,
    )


def stored_before(data_dir: Path, label: str, run_id: str) -> dict[str, dict[str, Any]]:
    """URL -> its `ok` row from earlier runs for this label, if the file is still there.

    Rows of this very run are ignored, so re-running a run id redoes it rather than
    skipping everything it did the first time.
    """
    columns = ["run_id", "url", "label", "status", *_KEPT]
    rows = read_table("scrape_manifest", data_dir=data_dir, columns=columns, on_damaged="skip")
    rows = rows[(rows["label"] == label) & (rows["status"] == "ok") & (rows["run_id"] != run_id)]
    found: dict[str, dict[str, Any]] = {}
    for row in rows.to_dict("records"):
        if row["path"] and Path(row["path"]).is_file():
            found[row["url"]] = {k: (None if _missing(row[k]) else row[k]) for k in columns}
    return found


def _missing(value: Any) -> bool:
    try:
        return bool(value != value) or value is None  # NaN / pd.NA / None
    except TypeError:
        return True  # pd.NA compares to NA, and bool(NA) raises


def _skip_rows(
    candidates: list[dict], before: dict[str, dict], max_images: int | None, run_id: str, label: str
) -> tuple[list[dict], list[dict]]:
    """Split candidates into (to download, skipped rows): already stored, or past max_images."""
    todo, skipped = [], []
    for i, c in enumerate(candidates):
        base = (run_id, label, c["page_url"], c["url"], "skipped")
        if max_images is not None and i >= max_images:
            skipped.append(
                manifest_row(*base, found_in=c["found_in"], error=f"beyond max_images={max_images}")
            )
        elif (old := before.get(c["url"])) is not None:
            kept = {k: old[k] for k in _KEPT}
            error = f"already stored by run {old['run_id']}"
            skipped.append(manifest_row(*base, found_in=c["found_in"], error=error, **kept))
        else:
            todo.append(c)
    return todo, skipped


@flow(name="scrape-images", description="Find, download, validate and dedupe page images.")
def scrape_images(params: ScrapeParams) -> ScrapeResult:
    enforce_policy(params)  # a served run: only what the operator allows, before any work
    run_id = params.run_id or new_run_id()
    safe_name(run_id, "run id")
    layout = Layout.at(params.data_dir)
    raw_dir = layout.raw(params.label)  # refuses a label that is not one safe folder name
    config = fetch_config(params)
    log = logger()
    check_proxy(config)  # before any work: a refused proxy fails the run, not every URL

    before = stored_before(layout.root, params.label, run_id)
    found = find_image_urls(
        params.pages, run_id, params.label, config, params.follow_pages, params.max_images,
        max_candidates=params.max_candidates,
    )  # fmt: skip
    todo, skipped = _skip_rows(found["candidates"], before, params.max_images, run_id, params.label)
    log.info("%d image URL(s), %d to download", len(found["candidates"]), len(todo))
    run_date = datetime.now(UTC).date()  # every part of the run in one partition
    data_dir = layout.root.as_posix()
    own = found["rows"] + skipped
    files = [
        write_table(
            "scrape_manifest", own, run_id=run_id, data_dir=data_dir, run_date=run_date,
            part=f"{params.label}-0000",
        ).as_posix()
    ] if own else []  # fmt: skip
    shards = _download(params, todo, run_id, raw_dir, run_date, data_dir)
    known = {r["sha256"] for r in before.values() if r["sha256"]}
    counts = Counter(r["status"] for r in own)
    counts.update(dedupe_shards(shards, known, run_id=run_id, run_date=run_date, data_dir=data_dir))
    # Only now that every new part is written: a crash before this leaves the old rows.
    clear_parts(data_dir, run_id, params.label, written=files + [s.path for s in shards])
    result = ScrapeResult(
        run_id=run_id,
        label=params.label,
        manifest_path=(layout.table_dir("scrape_manifest") / f"run_date={run_date}").as_posix(),
        manifest_files=files + [s.path for s in shards],
        raw_dir=raw_dir.as_posix(),
        pages=found["pages"],
        candidates=len(found["candidates"]),
        stored=counts["ok"],
        counts={s: counts[s] for s in SCRAPE_STATUSES if counts[s]},
        reasons=_reasons(data_dir, run_id, params.label),
    )
    log.info("scrape %s [%s]: %s", run_id, params.label, result.counts)
    return result


def _reasons(data_dir: str, run_id: str, label: str) -> dict[str, list[tuple[str, int]]]:
    """Why this run's rows for the label are not ok, read back from what it wrote."""
    rows = read_table(
        "scrape_manifest", data_dir=data_dir, run_id=run_id, columns=["label", "status", "error"]
    )
    rows = rows[rows["label"] == label]
    return status_reasons(zip(rows["status"], rows["error"], strict=True))


def _download(
    params: ScrapeParams, todo: list[dict], run_id: str, raw_dir: Path, run_date, data_dir: str
) -> list:
    """Download shards on the chosen runner, in page order; each writes its own part.

    threads: one shard at a time, as each already downloads `concurrency` URLs at once with
    its own per-host slots. processes/dask: shards in parallel, `concurrency` each. On every
    runner a shard holds its hosts' Prefect global concurrency limits while it runs, so
    per_host holds across workers and across runs scraping the same host.
    """
    create_host_limits([c["url"] for c in todo], params.per_host)
    config = fetch_config(params)
    size = params.shard_size  # few enough tasks, big enough to keep a worker's threads busy
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    with task_runner_for(params.runner, params.dask_address, threads=1) as runner:
        futures = [
            runner.submit(
                download_shard,
                {
                    "candidates": batch, "run_id": run_id, "label": params.label,
                    "raw_dir": str(raw_dir), "config": config, "min_size": params.min_size,
                    "part": f"{params.label}-{n:04d}", "run_date": run_date, "data_dir": data_dir,
                    "lease_s": params.host_lease_s,
                },
            )
            for n, batch in enumerate(batches, start=1)
        ]  # fmt: skip
        return [future.result() for future in futures]
