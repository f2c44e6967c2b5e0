"""`show` for people (narrow, rounded) and scripts (--columns, CSV, JSON, `latest`), and `runs`
from the warehouse when no server runs: through the real command."""

from __future__ import annotations

import io
import json
import os
import time

import pandas as pd
from typer.testing import CliRunner

from flows.cli import commands as cli
from storage.parquet import read_table, write_table
from tasks.scrape.manifest import manifest_row

runner = CliRunner()
LONG = "/very/long/folder/" * 20 + "picture-0001.jpg"


def invoke(*args: str):
    result = runner.invoke(cli.app, list(args), env={"COLUMNS": "80"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def scrape_rows(run_id: str, n: int) -> list[dict]:
    return [
        manifest_row(run_id, "sun", "http://example.invalid/", f"http://example.invalid/{i}.jpg",
                     "ok", path=LONG, error=None, width=40)
        for i in range(n)
    ]  # fmt: skip


def test_show_is_narrow_and_rounded_and_scripts_choose_columns_and_format(data_dir):
    history = [{"run_id": "r1", "model": "small_cnn", "epoch": 1, "loss": 0.123456789,
                "accuracy": 0.9305555820465088, "val_loss": 0.2, "val_accuracy": 0.9,
                "is_best": True, "checkpoint_path": LONG, "seconds": 1.0, "learning_rate": 0.001,
                "finished_at": pd.Timestamp("2026-12-01", tz="UTC")}]  # fmt: skip
    write_table("epoch_history", history, run_id="r1")
    table = invoke("show", "epoch_history")
    assert "0.931" in table and "0.9305555820465088" not in table
    assert all(len(line) <= 100 for line in table.splitlines()), table
    assert read_table("epoch_history")["accuracy"][0] == 0.9305555820465088  # stored in full

    write_table("scrape_manifest", scrape_rows("old", 1), run_id="old")
    newest = write_table("scrape_manifest", scrape_rows("new", 3), run_id="new")
    os.utime(newest, (time.time() + 5, time.time() + 5))
    table = invoke("show", "scrape_manifest", "--columns", "run_id,path", "--run-id", "latest")
    assert "…" in table and "picture-0001.jpg" in table  # a long path keeps its end
    assert "(3 of 3 rows)" in table and " old " not in table
    csv = invoke("show", "scrape_manifest", "--run", "latest", "--format", "csv",
                 "--columns", "run_id", "--columns", "width")  # fmt: skip
    assert pd.read_csv(io.StringIO(csv)).to_dict("list") == {
        "run_id": ["new"] * 3,
        "width": [40] * 3,
    }
    rows = json.loads(invoke("show", "scrape_manifest", "--format", "json", "--columns", "path"))
    assert rows[0] == {"path": LONG}  # scripts get the whole value


def test_show_refuses_an_unknown_column(data_dir):
    result = runner.invoke(cli.app, ["show", "epoch_history", "--columns", "nope"])
    assert result.exit_code == 1
    assert result.output.startswith("pixelpipe: error: epoch_history has no column 'nope'")


def test_runs_without_a_server_lists_the_warehouse(data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))  # no pixelpipe server there
    assert "no runs yet" in invoke("runs")
    write_table("scrape_manifest", scrape_rows("20261201-000000-aaaaaa", 1),
                run_id="20261201-000000-aaaaaa")  # fmt: skip
    batch = {"run_id": "20261202-000000-bbbbbb", "model": "m", "epoch": 1, "batch": 0,
             "loss": 1.0, "accuracy": 0.5}  # fmt: skip
    write_table("batch_history", [batch], run_id=batch["run_id"])
    lines = invoke("runs").splitlines()
    assert lines.pop(0) == "no Prefect server running: runs recorded in the warehouse"
    assert lines[1].split()[0] == "20261202-000000-bbbbbb" and lines[1].endswith("train")
    assert lines[2].split()[0] == "20261201-000000-aaaaaa" and lines[2].endswith("scrape")


def test_runs_with_a_server_lists_flow_runs_with_their_link(prefect_harness, monkeypatch):
    from prefect import flow
    from prefect.settings import PREFECT_API_URL

    @flow(name="pixelpipe-runs-probe")
    def probe() -> int:
        return 1

    probe()
    api = PREFECT_API_URL.value()
    monkeypatch.setenv("PREFECT_API_URL", api)
    lines = invoke("runs", "--limit", "1").splitlines()
    assert lines[0].split() == ["stage", "state", "started", "took", "link"]
    assert lines[1].startswith("pixelpipe-runs-probe") and " Completed " in lines[1]
    assert f"{api.removesuffix('/api')}/runs/flow-run/" in lines[1]
