"""A mistake that needs no model or server fails before TensorFlow or Prefect is imported (so
before any server is started or contacted), in one line; and `latest` names a stage's run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import checks
from flows.cli import commands as cli
from storage.errors import ConfigError
from storage.parquet import write_table
from tests.http_server import picture

REPO = Path(__file__).resolve().parents[3]
# Runs the real command, then says which heavy modules the process imported.
WRAPPER = (
    "import runpy, sys\n"
    "sys.argv = ['pixelpipe', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('flows.cli', run_name='__main__')\n"
    "finally:\n"
    "    print('imported:', sorted(m for m in ('tensorflow', 'keras', 'prefect')"
    " if m in sys.modules))\n"
)


def pixelpipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PIXELPIPE_DATA_DIR": str(tmp_path / "data")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "KERAS_HOME": str(tmp_path / "keras")}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    one_class = tmp_path / "one" / "train" / "cats"
    one_class.mkdir(parents=True)
    (one_class / "a.png").write_bytes(picture(1))
    cats = ["curate", "--source-dir", str(tmp_path / "one" / "train")]
    return [
        (["curate", "--source-dir", "/nope"], "source folder /nope does not exist"),
        (["curate", "--source-dir", str(empty)], "no images in"),
        ([*cats, "--labels", "dogs"], "no folder for label(s) ['dogs']"),
        ([*cats, "--expect", "dogs=beagle"], "--expect names label(s) ['dogs'] with no images"),
        # No weights in the (empty) Keras cache, downloads off: each names its own option.
        ([*cats, "--expect", "cats=tabby", "--no-label-issues"], "--classifier-weights PATH"),
        (cats, "--feature-weights PATH"),
        (["train", "--dataset-dir", "/nope"], "dataset_dir /nope has no train/ folder"),
        (["train", "--dataset-dir", str(tmp_path / "one")], "needs at least 2 class folders"),
        (["train", "--resume-run", "nosuchrun"], "cannot resume run 'nosuchrun'"),
        (["predict", "--inputs", "/nothere"], "input '/nothere' does not exist"),
        (["predict", "--inputs", str(empty)], f"no images found in {empty}"),
        (["predict", "--inputs", str(empty), "--model", "nosuchrun"], "no images found"),
        (["predict", "--scrape-run", "nosuchrun"], "scrape run 'nosuchrun' has no"),
        (["promote", "--run-id", "nosuchrun"], "run 'nosuchrun' has no trained model"),
        (["promote", "--run-id", "latest"], "`latest`: no train run under"),
        (["rollback", "--dataset", "flowers"], "'flowers' has no previous champion"),
        (["report", "--run-id", "nosuchrun"], "no table has rows for run nosuchrun"),
        (["run", "--dataset-dir", "/nope"], "dataset_dir /nope needs train/ and val/"),
    ]


def test_mistakes_fail_before_tensorflow_or_prefect(tmp_path):
    for args, message in cases(tmp_path):
        done = pixelpipe(tmp_path, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("pixelpipe: error: "), (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert len(done.stderr.splitlines()) == 1, (args, done.stderr)
        # Not even Prefect: so no server was started or asked (and no TensorFlow start-up).
        assert "imported: []" in done.stdout, (args, done.stdout)


def test_latest_names_the_newest_run_of_each_stage(data_dir):
    row = {"run_id": "r1", "model": "m", "epoch": 1, "batch": 0, "loss": 1.0, "accuracy": 0.5}
    with pytest.raises(ConfigError, match="`latest`: no run under"):
        checks.latest_run("any")
    first = write_table("batch_history", [row], run_id="r1")
    later = write_table("batch_history", [{**row, "run_id": "r0"}], run_id="r0")
    now = time.time()
    os.utime(first, (now - 60, now - 60))  # r1 written first, although it sorts after r0
    os.utime(later, (now, now))
    assert checks.latest_run("any") == "r0"
    with pytest.raises(ConfigError, match="`latest`: no scrape run"):
        checks.latest_run("scrape")
    for run, age in (("t-new", 0), ("t-old", 60)):
        folder = data_dir / "models" / run
        folder.mkdir(parents=True)
        (folder / "model_card.json").write_text("{}")
        os.utime(folder / "model_card.json", (now - age, now - age))
    (data_dir / "models" / "champions").mkdir()  # no card: not a run
    assert checks.latest_run("train") == "t-new"


def test_report_latest_reports_on_the_newest_run(data_dir):
    """`latest` through the real command: report's run id resolves before its checks."""
    result = CliRunner().invoke(cli.app, ["report", "--run-id", "latest"])
    assert result.exit_code == 1
    assert result.output.startswith("pixelpipe: error: `latest`: no run under ")
