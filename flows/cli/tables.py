"""`pixelpipe tables`, `pixelpipe show` and `pixelpipe runs`: the warehouse and the recent runs,
as narrow tables for people or CSV/JSON for scripts."""

from __future__ import annotations

import enum
import os
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from flows.cli.options import app, fail
from storage.errors import PixelpipeError

if TYPE_CHECKING:
    import pandas as pd

# What `show` prints of each table unless --columns says otherwise: what a person reads first.
DEFAULT_COLUMNS = {
    "scrape_manifest": ["run_id", "label", "status", "url", "error"],
    "dataset_manifest": ["run_id", "split", "label", "status", "path"],
    "epoch_history": ["run_id", "model", "epoch", "loss", "accuracy", "val_loss", "val_accuracy"],
    "batch_history": ["run_id", "epoch", "batch", "loss", "accuracy"],
    "predictions": ["run_id", "image", "rank", "label", "probability", "is_target", "status"],
    "curation": ["run_id", "label", "check", "verdict", "path"],
    "models": ["run_id", "dataset", "model", "decision", "eval_accuracy", "decided_at"],
}
# The stage whose `latest` run a table's --run-id latest names (others: the table's own).
TABLE_STAGES = {"scrape_manifest": "scrape", "dataset_manifest": "dataset"}
# A table's rows say which stage of a run wrote them (for `runs` without a server).
WAREHOUSE_STAGES = {
    "scrape_manifest": "scrape", "curation": "curate", "dataset_manifest": "prepare",
    "epoch_history": "train", "batch_history": "train", "models": "promote",
    "predictions": "predict",
}  # fmt: skip
PATH_WORDS = ("path", "image", "url")  # long values whose end says the most: cut on the left
CELL = 48  # widest cell in the table format


class Format(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def tables(data_dir: str | None = typer.Option(None, "--data-dir", help="Data root")) -> None:
    # deferred: CLI start-up (pandas and pyarrow)
    from storage.counts import table_counts

    counts = _guard(lambda: table_counts(data_dir))
    typer.echo(f"{'table':<18} {'rows':>10} {'runs':>6}")
    for name, (rows, runs) in counts.items():
        typer.echo(f"{name:<18} {rows:>10} {runs:>6}")


def show(
    table: str = typer.Argument(..., help="Table name (see `pixelpipe tables`)"),
    run_id: str | None = typer.Option(
        None, "--run-id", "--run", help="Only this run (`latest`: the newest)"
    ),
    columns: typing.Annotated[
        list[str] | None,
        typer.Option("--columns", help="Columns to print, comma-separated or repeated"),
    ] = None,
    fmt: typing.Annotated[
        Format,
        typer.Option("--format", show_default=False, help="table, csv or json (default: table)"),
    ] = Format.table,
    limit: int = typer.Option(
        20, "--limit", min=1, show_default=False, help="Rows to print (default: 20)"
    ),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Data root"),
) -> None:
    # deferred: CLI start-up (pandas and pyarrow)
    from flows.cli.checks import LATEST, latest_run
    from storage.counts import count_rows
    from storage.parquet import read_table
    from storage.rows import schema_of

    run = run_id

    def read() -> pd.DataFrame:
        nonlocal run
        known = schema_of(table).names
        wanted = [c for group in columns or [] for c in group.split(",") if c.strip()]
        if unknown := [c for c in wanted if c not in [*known, "run_date"]]:
            raise PixelpipeError(f"{table} has no column {unknown[0]!r}; it has {', '.join(known)}")
        chosen = wanted or [c for c in DEFAULT_COLUMNS.get(table, known) if c in known]
        run = latest_run(TABLE_STAGES.get(table, table), data_dir) if run_id == LATEST else run_id
        # Only the parts that can hold the rows, and only as many rows as are shown.
        return read_table(table, data_dir=data_dir, run_id=run, columns=chosen, limit=limit)

    rows = _guard(read)
    if fmt is Format.csv:
        typer.echo(rows.to_csv(index=False), nl=False)
    elif fmt is Format.json:
        typer.echo(rows.to_json(orient="records", date_format="iso", indent=1))
    elif rows.empty:
        typer.echo(f"{table}: no rows" + (f" for run {run_id}" if run_id else ""))
    else:
        typer.echo(narrow(rows).to_string(index=False))
        total = _guard(lambda: count_rows(table, data_dir=data_dir, run_id=run))  # footers only
        typer.echo(f"({len(rows)} of {total} rows)")


def narrow(frame: pd.DataFrame) -> pd.DataFrame:
    """For the eye: floats to 3 decimals, long values cut to CELL characters (paths and URLs
    keep their end); the stored values keep full precision."""
    from pandas.api.types import is_float_dtype

    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if is_float_dtype(column):
            out[name] = column.map(lambda v: "" if v != v else f"{v:.3f}")
        else:
            left = any(word in name for word in PATH_WORDS)
            out[name] = column.map(lambda v, left=left: _cut(v, CELL, left))
    return out


def _cut(value: Any, width: int, left: bool) -> Any:
    if not isinstance(value, str) or len(value) <= width:
        return value
    return "…" + value[-(width - 1) :] if left else value[: width - 1] + "…"


def runs(
    limit: int = typer.Option(
        10, "--limit", min=1, show_default=False, help="Runs to list (default: 10)"
    ),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Data root, without a server"),
) -> None:
    # deferred: CLI start-up (httpx, Prefect's client, pandas)
    from flows.cli.server import healthy, running_url

    url = os.environ.get("PREFECT_API_URL") or running_url()
    if url and healthy(url):
        lines = _guard(lambda: prefect_runs(url, limit))
    else:
        typer.echo("no Prefect server running: runs recorded in the warehouse", err=True)
        lines = _guard(lambda: warehouse_runs(data_dir, limit))
    typer.echo("\n".join(lines) if lines else "no runs yet")


def prefect_runs(api_url: str, limit: int) -> list[str]:
    """The newest flow runs from the Prefect API (its public client), one line each."""
    from prefect import get_client
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        found = client.read_flow_runs(limit=limit, sort=FlowRunSort.START_TIME_DESC)
        flows = {f.id: f.name for f in client.read_flows(limit=200)}
    if not found:
        return []
    ui = api_url.removesuffix("/api")
    lines = [f"{'stage':<18} {'state':<10} {'started':<19} {'took':>8}  link"]
    for run in found:
        started = f"{run.start_time:%Y-%m-%d %H:%M:%S}" if run.start_time else "–"
        took = f"{run.total_run_time.total_seconds():.1f} s"
        state = run.state.name if run.state else "–"
        link = f"{ui}/runs/flow-run/{run.id}"
        lines.append(
            f"{flows.get(run.flow_id, '?'):<18} {state:<10} {started:<19} {took:>8}  {link}"
        )
    return lines


def warehouse_runs(data_dir: str | None, limit: int) -> list[str]:
    """Without a server: each run id's stages as the warehouse recorded them, newest first."""
    # deferred: CLI start-up (pandas and pyarrow)
    from storage.parquet import read_table

    found: dict[str, tuple[str, set[str]]] = {}
    for table, stage in WAREHOUSE_STAGES.items():
        frame = read_table(table, data_dir=data_dir, columns=["run_id", "run_date"],
                           on_damaged="skip")  # fmt: skip
        for run, day in frame.drop_duplicates().itertuples(index=False):
            latest, stages = found.get(run, ("", set()))
            found[run] = (max(latest, str(day)), stages | {stage})
    newest = sorted(found.items(), key=lambda kv: (kv[1][0], kv[0]), reverse=True)[:limit]
    if not newest:
        return []
    lines = [f"{'run id':<26} {'run date':<10}  stages"]
    for run, (day, stages) in newest:
        order = [s for s in WAREHOUSE_STAGES.values() if s in stages]
        lines.append(f"{run:<26} {day:<10}  {', '.join(dict.fromkeys(order))}")
    return lines


def register() -> None:
    """Add `tables`, `show` and `runs` to the app (after the stages: the help lists them so)."""
    app.command("tables", help="List the warehouse tables with their row and run counts.")(tables)
    app.command("show", help="Print rows of a warehouse table (a table, CSV or JSON).")(show)
    app.command("runs", help="List recent runs: stage, state, duration, link in the UI.")(runs)


def _guard(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except PixelpipeError as e:
        fail(str(e))
