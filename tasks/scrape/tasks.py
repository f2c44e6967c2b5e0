"""The scraper's Prefect tasks: read pages for image URLs, then download and keep images, in
batches, recording one scrape_manifest row per URL."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from storage.layout import Layout
from storage.parquet import replace_parts, write_table
from tasks.runtime import Progress, logger
from tasks.scrape.budget import Meter
from tasks.scrape.extract import parse_page
from tasks.scrape.fetch import AddressPolicy, Fetcher
from tasks.scrape.images import check_image, decode_data_uri, sha256_hex, store_image
from tasks.scrape.manifest import (
    REFUSALS_KEPT_FOR_PAGES,
    duplicates,
    interleave_by_host,
    manifest_row,
    mark_duplicates,
)
from tasks.scrape.politeness import LEASE_S, host_lease
from tasks.scrape.settings import ScrapeSettings
from tasks.scrape.stored import StoredIndex

HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml", "text/xml")


def _now() -> datetime:
    return datetime.now(UTC)


# --- pages ---------------------------------------------------------------------------------------


def _read_chain(
    fetcher: Fetcher,
    start: str,
    follow: int,
    limit: int | None,
    visited: set[str],
    lock,
    max_candidates: int | None = None,
    progress: Progress | None = None,
) -> tuple[list[dict], list[dict], int]:
    """Read `start` and up to `follow` rel=next pages after it.

    Returns (candidates, failed-page outcomes, pages read). Stops early once `limit`
    candidates are found: more would only be cut off later. Each page gives at most
    `max_candidates` (a hostile page can list a hundred thousand); the log says how many
    were dropped.
    """
    candidates: list[dict] = []
    failures: list[dict] = []
    url: str | None = start
    read = 0
    for _ in range(follow + 1):
        with lock:
            if url is None or url in visited:
                break
            visited.add(url)
        fetched = fetcher.get(url)
        ctype = (fetched.content_type or "").split(";")[0].strip().lower()
        if fetched.ok and ctype and ctype not in HTML_TYPES:
            fetched.status, fetched.error = "page_error", f"not an HTML page ({ctype})"
        if not fetched.ok:
            status = fetched.status if fetched.status in REFUSALS_KEPT_FOR_PAGES else "page_error"
            failures.append({"url": url, "status": status, "fetched": fetched})
            break
        read += 1
        if progress is not None:
            with lock:  # chains read on several threads
                progress.advance()
        # Parsing counts against the URL's deadline: a hostile page wastes its own time only.
        page = parse_page(fetched.content, fetched.final_url, max_candidates, Meter(fetched.left_s))
        if page.dropped:
            logger().warning(
                "%s: more than max_candidates=%d image URLs; kept the first, dropped %d more"
                " (at least: the rest of the page was not read for images)",
                url, max_candidates, page.dropped,
            )  # fmt: skip
        for c in page.candidates:
            candidates.append({"url": c.url, "page_url": url, "found_in": c.found_in})
        if page.timed_out:
            fetched.status = "timeout"
            fetched.error = (
                f"parsing the page ran past the deadline ({fetcher.config.deadline_s} s);"
                f" kept the {len(page.candidates)} image URL(s) found before"
            )
            failures.append({"url": url, "status": "timeout", "fetched": fetched})
            break
        if limit is not None and len(candidates) >= limit:
            break
        url = next(iter(page.next_urls), None)
    return candidates, failures, read


@task(name="find-image-urls", cache_policy=NO_CACHE)
def find_image_urls(
    pages: list[str],
    run_id: str,
    label: str,
    config: ScrapeSettings,
    follow_pages: int = 0,
    max_images: int | None = None,
    policy: AddressPolicy | None = None,
    max_candidates: int | None = None,
) -> dict[str, Any]:
    """Read the pages (and their rel=next pages); return the candidate image URLs in page
    order, each once, plus a manifest row for every page that could not be read."""
    visited: set[str] = set()
    lock = threading.Lock()
    # At most this many pages: a chain may end (or hit max_images) sooner.
    progress = Progress(len(pages) * (follow_pages + 1), f"reading pages for {label!r}")

    def chain(page: str) -> tuple[list[dict], list[dict], int]:
        return _read_chain(
            fetcher, page, follow_pages, max_images, visited, lock, max_candidates, progress
        )

    with Fetcher(config, policy) as fetcher, ThreadPoolExecutor(config.concurrency) as pool:
        chains = list(pool.map(chain, pages))
    progress.finish()
    candidates: list[dict] = []
    seen: set[str] = set()
    rows, read = [], 0
    for found, failures, count in chains:
        read += count
        candidates += [c for c in found if not (c["url"] in seen or seen.add(c["url"]))]
        for failure in failures:
            f = failure["fetched"]
            rows.append(
                manifest_row(
                    run_id, label, failure["url"], failure["url"], failure["status"],
                    **_fetch_fields(f), error=f.error, found_in="page",
                )
            )  # fmt: skip
    logger().info("read %d page(s): %d image URL(s), %d page(s) failed", read, len(seen), len(rows))
    return {"candidates": candidates, "rows": rows, "pages": read}


def _fetch_fields(fetched) -> dict[str, Any]:
    return {
        "http_status": fetched.http_status,
        "content_type": fetched.content_type,
        "final_url": fetched.final_url,
        "attempts": fetched.attempts,
        "elapsed_s": round(fetched.elapsed_s, 4),
        "fetched_at": _now(),
    }


# --- images --------------------------------------------------------------------------------------


def download_one(
    fetcher: Fetcher, url: str, raw_dir: Path, min_size: int, max_bytes: int
) -> dict[str, Any]:
    """Fetch (or decode) one URL, check it is a real image and store it as <sha256>.<ext>.
    Returns the manifest fields of its outcome; never raises for a bad URL or bad bytes."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "data":
        fields: dict[str, Any] = {"fetched_at": _now()}
        try:
            data = decode_data_uri(url)
        except ValueError as e:
            return {**fields, "status": "corrupt", "error": str(e)}
    elif scheme not in ("http", "https"):
        return {"status": "unsupported_scheme", "error": f"scheme {scheme or '(none)'!r} refused"}
    else:
        fetched = fetcher.get(url, opt_outs=True)
        fields = _fetch_fields(fetched)
        if not fetched.ok:
            return {**fields, "status": fetched.status, "error": fetched.error}
        data = fetched.content
    fields["bytes"] = len(data)
    if len(data) > max_bytes:
        return {**fields, "status": "too_large", "error": f"over max_bytes {max_bytes}"}
    check = check_image(data, min_size, fetcher.config.max_pixels)
    fields.update(format=check.format, width=check.width, height=check.height)
    if check.status != "ok":
        return {**fields, "status": check.status, "error": check.error}
    sha = sha256_hex(data)
    path = raw_dir / f"{sha}.{check.extension}"
    store_image(data, path)
    return {**fields, "status": "ok", "sha256": sha, "path": path.as_posix()}


@task(name="download-images", cache_policy=NO_CACHE)
def download_images(
    candidates: list[dict],
    run_id: str,
    label: str | None,
    raw_dir: str,
    config: ScrapeSettings,
    min_size: int = 32,
    policy: AddressPolicy | None = None,
    progress_artifact: bool = True,
) -> list[dict]:
    """Download a batch of candidates concurrently (`config.concurrency` workers, at most
    `config.per_host` per host) and return their manifest rows in the batch's order.
    `progress_artifact` False: the caller's run shows the progress (a shard of a scrape).

    `label` None: each candidate carries its own (a URL list's rows) and its image goes to
    `raw_dir/<label>/`; else every image goes to `raw_dir`. Not retried as a task: retries
    happen per request, where Retry-After can be honoured, and a re-run batch would find its
    own files and call them duplicates.
    """
    root = Path(raw_dir).resolve()
    labels = [label or c["label"] for c in candidates]
    folders = [root if label else root / own for own in labels]
    urls = [c["url"] for c in candidates]
    outcomes: list[dict[str, Any] | None] = [None] * len(urls)
    workers = max(1, min(config.concurrency, len(urls)))

    def work(i: int) -> None:
        outcomes[i] = download_one(fetcher, urls[i], folders[i], min_size, config.max_bytes)

    shown = f"Downloading {len(urls)} image(s) for {label or 'the list'!r}"
    progress = Progress(len(urls), shown, artifact=progress_artifact)
    order = iter(interleave_by_host(urls))
    # Every image advances the terminal bar; Progress itself spaces the artifact's API calls.
    # A window of futures, not one per URL at once: each holds a lock and a condition.
    with Fetcher(config, policy) as fetcher, ThreadPoolExecutor(workers) as pool:
        running = {pool.submit(work, i) for i in islice(order, 2 * workers)}
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # re-raises what is not a bad item (a full disk, say)
                progress.advance()
            running |= {pool.submit(work, i) for i in islice(order, len(done))}
    rows = [
        manifest_row(run_id, own, c["page_url"], c["url"], found_in=c.get("found_in"), **o)
        for c, own, o in zip(candidates, labels, outcomes, strict=True)
    ]
    return mark_duplicates(rows)


# --- shards: each written by the process that downloaded it ---------------------------------------


class ShardOutcome(BaseModel):
    """What a download shard sends back: its manifest file and counts, never the rows."""

    part: str
    path: str
    counts: dict[str, int]


@task(name="download-shard", task_run_name="download-shard-{part}", cache_policy=NO_CACHE)
def download_shard(
    candidates: list[dict],
    run_id: str,
    label: str | None,
    raw_dir: str,
    config: ScrapeSettings,
    min_size: int,
    *,
    part: str,
    run_date: date,
    data_dir: str,
    lease_s: float = LEASE_S,
    decided: list[dict] | None = None,
) -> ShardOutcome:
    """download_images over one shard, its rows written as scrape_manifest part `part` by the
    worker that fetched them. A shard redone after its worker died rewrites the same part (and
    finds its own files, same name, same bytes), so no row is counted twice.

    While downloading it holds its hosts' global concurrency limits (tasks.scrape.politeness),
    so shards of other workers and runs keep to `per_host` too; a dead holder's slots come
    back after `lease_s`. `decided`: rows settled without a download (a URL list's bad,
    repeated or already stored rows), written first in the same part.
    """
    claims = Layout.at(data_dir).root / ".leases"
    urls = [c["url"] for c in candidates]
    rows = list(decided or [])
    if candidates:
        with host_lease(urls, config.per_host, claims, lease_s):
            rows += download_images.fn(
                candidates, run_id, label, raw_dir, config, min_size, progress_artifact=False
            )
    path = write_table(
        "scrape_manifest", rows, run_id=run_id, data_dir=data_dir, run_date=run_date, part=part
    )
    counts = Counter(r["status"] for r in rows)
    return ShardOutcome(part=part, path=path.as_posix(), counts=dict(counts))


@task(name="dedupe-shards", cache_policy=NO_CACHE)
def dedupe_shards(
    shards: list[ShardOutcome], index_path: str, *, run_id: str, run_date: date, data_dir: str
) -> dict[str, int]:
    """Across shards, in order: an `ok` row whose bytes an earlier shard (or an earlier run,
    the sha256s of the StoredIndex at `index_path`) stored becomes `duplicate`, as
    mark_duplicates decides within a shard. Reads three columns per shard and rewrites only
    the shards that change; the sha256s seen grow in the index's file, not in memory."""
    counts: Counter[str] = Counter()
    with StoredIndex(index_path) as index:
        first = index.shas()
        for shard in shards:
            table = pq.read_table(shard.path, columns=["url", "status", "sha256"]).to_pydict()
            changed = duplicates(zip(*table.values(), strict=True), first)
            if changed:
                _mark(shard, changed, run_id=run_id, run_date=run_date, data_dir=data_dir)
            counts.update(table["status"])
            counts.subtract({"ok": len(changed)})
            counts.update({"duplicate": len(changed)})
    return {status: n for status, n in counts.items() if n}


def _mark(
    shard: ShardOutcome, changed: dict[int, str], *, run_id: str, run_date: date, data_dir: str
) -> None:
    table = pq.read_table(shard.path)
    status, error = table.column("status").to_pylist(), table.column("error").to_pylist()
    for i, why in changed.items():
        status[i], error[i] = "duplicate", why
    for name, values in (("status", status), ("error", error)):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index), pa.array(values, pa.string()))
    write_table(
        "scrape_manifest",
        table,
        run_id=run_id,
        data_dir=data_dir,
        run_date=run_date,
        part=shard.part,
    )


def clear_parts(
    data_dir: str, run_id: str, label: str, written: Iterable[str | os.PathLike[str]] = ()
) -> int:
    """Delete this run's earlier manifest parts for `label` (`<run>-<label>-NNNN`, on any
    date), except the ones just `written`: call it after writing, so a re-run replaces its
    rows, even when it now has fewer shards, and a crash leaves old or new rows."""
    removed = replace_parts(
        "scrape_manifest", run_id=run_id, written=written, group=label, data_dir=data_dir
    )
    return len(removed)
