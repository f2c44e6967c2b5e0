"""Help that fits an 80-column terminal: `run --help` short and grouped by stage, one default
style, required options marked, the DAG as it is; every stage option still works in `run`."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.cli.options import app

runner = CliRunner()
STAGE_COMMANDS = ["scrape", "curate", "prepare", "train", "predict", "report", "run", "promote"]


def help_of(*command: str) -> str:
    result = runner.invoke(cli.app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def test_run_help_is_short_grouped_by_stage_and_points_to_the_rest():
    text = help_of("run")
    assert len(text.splitlines()) < 100  # 560 lines when every stage option was listed
    for section in ("Options:", "Scrape options:", "Prepare options:", "Train options:"):
        assert f"\n{section}\n" in text
    assert "--epochs <int>" in text and "--rotation-range <float>" not in text
    assert "`pixelpipe scrape --help`" in text


def test_help_fits_80_columns_with_one_default_style():
    for command in [[], *([c] for c in STAGE_COMMANDS), ["show"], ["runs"], ["serve"]]:
        text = help_of(*command)
        assert max(map(len, text.splitlines())) <= 80, command
        assert "[default:" not in text, command  # "(default: 10)" everywhere
    assert "The run to report on [required]" in help_of("report")
    assert "--run-id <str>" in help_of("promote") and "[required]" in help_of("promote")


def test_the_top_level_help_describes_the_dag():
    text = " ".join(help_of().split())  # the words, however the terminal wraps them
    assert "scrape -> curate -> prepare (train/val/test splits) -> train -> promote" in text
    assert "-> predict -> report" in text


def test_hidden_stage_options_still_work_in_run(data_dir):
    """--rotation-range is not listed by `run --help` but is accepted (checked by the model)."""
    result = runner.invoke(app, ["run", "--rotation-range", "400"])
    assert result.exit_code == 2
    assert "--rotation-range: Input should be less than or equal to 180" in result.output
