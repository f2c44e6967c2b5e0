"""Errors are one line: a PixelpipeError inside a flow, a corrupt .keras, an unknown report run,
and missing ImageNet weights (checked before TensorFlow or a Prefect server)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.cli.checks import check_run_recorded
from storage.errors import ConfigError
from storage.parquet import write_table
from tasks.predict.engines.keras import load_trained
from tasks.predict.labels import Labels
from tasks.predict.spec import ModelSpec
from tests.http_server import picture

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


def test_a_config_error_inside_a_flow_prints_one_line(prefect_harness, data_dir):
    """The real command in a subprocess (its console is what a user sees), on the test server."""
    from prefect.settings import PREFECT_API_URL

    (data_dir / "raw" / "cats").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()}

    def prepare(*flags: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "flows.cli", *flags, "prepare", "--labels", "dogs"]
        return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)

    done = prepare()
    assert done.returncode == 1
    assert done.stderr.count("pixelpipe: error:") == 1
    line = f"pixelpipe: error: label 'dogs' has no folder under {data_dir / 'raw'}; found: cats"
    assert line in done.stderr.splitlines()
    assert "Beginning flow run" in done.stderr  # the flow did run: the error came from inside
    assert "Traceback" not in done.stderr and "ConfigError" not in done.stderr

    verbose = prepare("--verbose")
    assert verbose.returncode == 1 and verbose.stderr.count("pixelpipe: error:") == 1
    assert "Traceback" in verbose.stderr
    assert "storage.errors.ConfigError: label 'dogs'" in verbose.stderr


def _spec(path: Path) -> ModelSpec:
    return ModelSpec(
        kind="keras", name="small_cnn", path=str(path), identity="small_cnn@test",
        labels=Labels(("a", "b")), image_size=(32, 32), binary=True,
    )  # fmt: skip


def test_a_corrupt_keras_file_is_named_as_such(tmp_path):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"\x00not a zip at all" * 64)
    with pytest.raises(ConfigError, match=r"garbage.keras is not a valid Keras model file"):
        load_trained(_spec(garbage))
    not_a_model = tmp_path / "other.keras"
    with zipfile.ZipFile(not_a_model, "w") as archive:
        archive.writestr("notes.txt", "a zip, but no config.json or weights")
    with pytest.raises(ConfigError, match=r"other.keras is not a valid Keras model file \("):
        load_trained(_spec(not_a_model))


def test_report_of_an_unknown_run_fails_and_writes_nothing(data_dir):
    result = runner.invoke(cli.app, ["report", "--run-id", "20261130-000000-nope00"])
    assert result.exit_code == 1
    assert result.output.startswith(
        "pixelpipe: error: no table has rows for run 20261130-000000-nope00 under "
    )
    assert not (data_dir / "reports").exists()


def test_a_run_with_rows_or_a_model_folder_is_recorded(data_dir):
    from flows.params import ReportParams

    write_table("batch_history", [{"run_id": "r1", "model": "m", "epoch": 1, "batch": 0,
                                   "loss": 1.0, "accuracy": 0.5}], run_id="r1")  # fmt: skip
    check_run_recorded(ReportParams(run_id="r1"))
    (data_dir / "models" / "r2").mkdir(parents=True)
    check_run_recorded(ReportParams(run_id="r2"))
    with pytest.raises(ConfigError, match="no table has rows for run r3"):
        check_run_recorded(ReportParams(run_id="r3"))


def test_missing_resnet50_weights_fail_before_tensorflow_or_a_server(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(picture(1))
    wrapper = (
        "import runpy, sys\n"
        "sys.argv = ['pixelpipe', 'predict', '--model', 'resnet50', '--inputs', sys.argv[1]]\n"
        "try:\n    runpy.run_module('flows.cli', run_name='__main__')\n"
        "finally:\n    print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PIXELPIPE_OFFLINE": "1"}
    env |= {"KERAS_HOME": str(tmp_path / "keras"), "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", wrapper, str(photos)], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert output.count("ImageNet weights for resnet50 are not in the Keras cache") == 1
    assert "pixelpipe: error: ImageNet weights for resnet50" in done.stderr
    assert "tensorflow imported: False" in done.stdout
    assert "temporary server" not in output and "Flow run" not in output


def test_promote_runs_in_the_cli_session_and_fails_in_one_line(prefect_harness, data_dir):
    """promote's flow runs on the server the session chose (no temporary one) and an error
    inside it is one line; -v shows the traceback."""
    import json

    from prefect.settings import PREFECT_API_URL

    model_dir = data_dir / "models" / "r1"
    model_dir.mkdir(parents=True)
    (model_dir / "best.keras").write_bytes(b"a model")
    empty = data_dir / "datasets" / "fruit"  # no test/ or val/ images: the flow refuses
    empty.mkdir(parents=True)
    card = {"class_names": ["a", "b"], "status": "trained", "dataset_dir": str(empty)}
    (model_dir / "model_card.json").write_text(json.dumps(card))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()}

    def promote(*flags: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "flows.cli", *flags, "promote", "--run-id", "r1"]
        return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)

    done = promote()
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("pixelpipe: error:")]
    assert len(errors) == 1 and str(empty) in errors[0], done.stderr
    assert "Beginning flow run" in done.stderr  # inside the flow, on the session's server
    assert "Traceback" not in done.stderr and "temporary server" not in done.stderr
    verbose = promote("-v")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
