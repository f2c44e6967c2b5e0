import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.cli import options as cli_app
from flows.params import TrainParams
from storage.errors import ConfigError
from storage.parquet import write_table

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(cli.app, list(args), catch_exceptions=False)


def commands_in_help(text: str) -> list[str]:
    """The first word of each row of the help's Commands section (not any other mention)."""
    rows = text.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [row.split()[0] for row in rows if row.startswith("  ") and row.strip()]


def test_help_lists_every_subcommand():
    result = runner.invoke(cli.app, ["--help"], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0
    listed = commands_in_help(result.output)
    assert len(listed) == len(set(listed))
    expected = {"scrape", "prepare", "train", "augment-preview", "predict", "report", "run"}
    expected |= {"demo", "serve", "tables", "show"}
    assert expected <= set(listed), f"missing from the Commands table: {expected - set(listed)}"


def test_commands_in_help_reads_only_the_commands_table():
    text = (
        "Usage: pixelpipe  run scrape, then train\n\n"
        "Options:\n  --help  Show this message and exit.\n\n"
        "Commands:\n  scrape  Find images.\n  run     Run all: train,\n\n"
    )
    assert commands_in_help(text) == ["scrape", "run"]


def test_installed_console_script_runs():
    exe = Path(sys.executable).with_name("pixelpipe")
    assert exe.exists(), "pip install -e . should install the `pixelpipe` console script"
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "pixelpipe" in done.stdout


def test_every_parameter_is_an_option_including_nested_ones():
    help_text = runner.invoke(cli.app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for flag in [
        "--dataset-dir",
        "--epochs",
        "--model",
        "--rotation-range",
        "--shear-range",
        "--zoom-range",
        "--brightness-range",
        "--fill-mode",
        "--horizontal-flip",
        "--resume-run",
        "--params",
    ]:
        assert flag in help_text


def test_invalid_values_fail_with_one_line_per_problem_and_no_traceback():
    result = runner.invoke(cli.app, ["train", "--epochs", "0", "--rotation-range", "400"])
    assert result.exit_code == 2
    assert "--epochs: Input should be greater than or equal to 1" in result.output
    assert "--rotation-range: Input should be less than or equal to 180" in result.output
    assert "Traceback" not in result.output


def test_literal_choices_are_checked_by_the_cli():
    result = runner.invoke(cli.app, ["train", "--model", "vgg16"])
    assert result.exit_code == 2 and "vgg16" in result.output


def test_params_file_is_read_and_command_line_wins(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setitem(cli_app._HANDLERS, "train", seen.append)
    params = tmp_path / "p.json"
    params.write_text(
        json.dumps({"epochs": 7, "batch_size": 8, "augmentation": {"rotation_range": 10}})
    )
    result = invoke("train", "--params", str(params), "--batch-size", "16", "--horizontal-flip")
    assert result.exit_code == 0, result.output
    (got,) = seen
    assert isinstance(got, TrainParams)
    assert (got.epochs, got.batch_size) == (7, 16)
    assert got.augmentation.rotation_range == 10 and got.augmentation.horizontal_flip


def test_yaml_params_file_and_bad_file(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setitem(cli_app._HANDLERS, "train", seen.append)
    good = tmp_path / "p.yaml"
    good.write_text("epochs: 3\nzoom_range_is_wrong: 1\n")
    result = runner.invoke(cli.app, ["train", "--params", str(good)])
    assert result.exit_code == 2 and "Extra inputs are not permitted" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(cli.app, ["train", "--params", str(bad)])
    assert result.exit_code == 1 and "cannot read parameters" in result.output


def test_tables_and_show(data_dir):
    rows = [
        {
            "run_id": "r1",
            "model": "small_cnn",
            "epoch": e,
            "batch": b,
            "loss": 1.0 / (b + 1),
            "accuracy": 0.5,
        }
        for e in range(2)
        for b in range(3)
    ]
    write_table("batch_history", rows, run_id="r1")
    result = invoke("tables")
    assert result.exit_code == 0
    line = next(ln for ln in result.output.splitlines() if ln.startswith("batch_history"))
    assert line.split()[1:] == ["6", "1"]
    result = invoke("show", "batch_history", "--run", "r1", "--limit", "4")
    assert result.exit_code == 0 and "(4 of 6 rows)" in result.output
    result = invoke("show", "batch_history", "--run", "nope")
    assert "no rows for run nope" in result.output


def test_show_unknown_table_is_one_clear_line():
    result = runner.invoke(cli.app, ["show", "nope"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("pixelpipe: error: unknown table 'nope'")


def test_pixelpipe_errors_become_one_line_and_exit_1(monkeypatch):
    def broken(params):
        raise ConfigError(f"run {params.run_id} has no model card")

    monkeypatch.setitem(cli_app._HANDLERS, "report", broken)
    result = runner.invoke(cli.app, ["report", "--run-id", "r1"])
    assert result.exit_code == 1
    assert result.output == "pixelpipe: error: run r1 has no model card\n"


def test_required_fields_are_reported():
    result = runner.invoke(cli.app, ["report"])
    assert result.exit_code == 2 and "--run-id: Field required" in result.output
    result = runner.invoke(cli.app, ["scrape"])  # pages or a URL list: one is needed
    assert result.exit_code == 2 and "give pages or url_list (one of them)" in result.output


def test_ad_hoc_runs_send_no_heartbeats():
    """Prefect joins a flow run's heartbeat thread for up to a second at its end: the CLI's
    session turns heartbeats off (a served run keeps Prefect's default)."""
    from prefect.settings import get_current_settings

    from flows.cli.session import no_heartbeats

    with no_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None
