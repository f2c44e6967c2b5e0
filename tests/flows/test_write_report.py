from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.exceptions import ParameterTypeError
from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.params import ReportParams
from flows.write_report import write_report
from storage.errors import ConfigError
from tests.tasks.report.run_data import RUN, make_run


def artifacts_of(flow_run_id, key: str):
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )


def test_flow_writes_the_report_and_publishes_artifacts(prefect_harness, data_dir):
    make_run(data_dir)
    state = write_report(
        params={"run_id": RUN, "data_dir": str(data_dir), "sample": 2}, return_state=True
    )
    result = state.result()
    flow_run_id = state.state_details.flow_run_id
    assert Path(result.report_path) == data_dir / "reports" / RUN / "report.html"
    assert Path(result.report_path).is_file() and Path(result.markdown_path).is_file()
    assert result.sections == ["scrape", "dataset", "health", "training", "predictions", "filters"]
    key = f"report-{RUN}"
    assert result.artifact_keys == [key, f"{key}-status", f"{key}-health", f"{key}-predictions"]

    [markdown] = artifacts_of(flow_run_id, key)
    assert markdown.type == "markdown"
    # The artifact starts with the report's summary card: the headline first.
    card = f"# pixelpipe run {RUN}\n\n## Summary\n\n- **accuracy (val/)**: 75.0% of 4 images\n"
    assert markdown.data.startswith(card)
    assert "**Next:** 1 of 6 URLs failed" in markdown.data
    assert result.report_path in markdown.data
    assert (
        "**downloaded**: 4" in markdown.data and "**validation accuracy**: 0.750" in markdown.data
    )
    assert "**target hits**: 3 of 4" in markdown.data
    assert str(data_dir / "reports" / RUN / "confusion_matrix.png") in markdown.data

    [status] = artifacts_of(flow_run_id, f"{key}-status")
    assert status.type == "table"
    assert '"stage": "scrape", "status": "http_error", "count": 1' in status.data
    [predictions] = artifacts_of(flow_run_id, f"{key}-predictions")
    assert '"label": "forest"' in predictions.data and "small_cnn" in predictions.data


def test_a_run_with_nothing_yet_says_so(prefect_harness, data_dir):
    note = "ImageNet stage skipped: <no weights>"
    params = ReportParams(run_id="20261128-000000-empty0", data_dir=str(data_dir), notes=[note])
    state = write_report(params=params, return_state=True)
    result = state.result()
    assert result.sections == [] and result.artifact_keys == ["report-20261128-000000-empty0"]
    page = Path(result.report_path).read_text()
    assert "Nothing has been recorded" in page and "skipped: &lt;no weights&gt;</p>" in page
    [markdown] = artifacts_of(state.state_details.flow_run_id, result.artifact_keys[0])
    assert "Nothing has been recorded for run 20261128-000000-empty0 yet" in markdown.data


def test_bad_parameters_fail_before_any_work(prefect_harness, data_dir, tmp_path):
    with pytest.raises(ParameterTypeError):
        write_report(params={"run_id": RUN, "sample": 0})
    with pytest.raises(ParameterTypeError, match="run_id"):  # refused by the parameter model
        write_report(params={"run_id": "../etc", "data_dir": str(data_dir)})
    with pytest.raises(ConfigError, match="does not exist"):
        write_report(params={"run_id": RUN, "data_dir": str(tmp_path / "typo")})
    assert not (data_dir / "reports").exists()


def test_cli_report_prints_the_html_path(prefect_harness, data_dir):
    make_run(data_dir)  # the CLI refuses a run id no table knows (tests/flows/test_cli_errors.py)
    result = CliRunner().invoke(
        cli.app, ["report", "--run-id", RUN, "--data-dir", str(data_dir)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(data_dir / "reports" / RUN / "report.html")
