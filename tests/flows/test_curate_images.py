"""curate_images end to end on a real (temporary) Prefect server, and prepare's exclusion."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from flows.cli.commands import app
from flows.curate_images import curate_images
from flows.params import CurateParams
from flows.prepare_dataset import prepare_dataset
from storage.errors import ConfigError
from storage.parquet import read_table
from tests.flows.test_write_report import artifacts_of
from tests.tasks.curate.test_curate import make_folder

pytestmark = pytest.mark.usefixtures("prefect_harness")


def curate(source, data_dir, **extra):
    fields = {"source_dir": str(source), "data_dir": str(data_dir), "features": "pixels"}
    return curate_images(params=fields | {"run_id": "cur1"} | extra)


def test_flagged_images_are_left_out_by_prepare_and_nothing_else_changes(tmp_path, data_dir):
    source, planted = make_folder(tmp_path / "src", per_class=20, flips=2, seed=1)
    before = {p.name: p.read_bytes() for p in source.rglob("*.png")}
    result = curate(source, data_dir)
    assert result.images == 40 and result.counts["label_issues"]["suspect_label"] >= 3
    rows = read_table("curation", data_dir=data_dir, run_id="cur1")
    flagged = set(rows.loc[rows["verdict"] == "suspect_label", "path"])
    assert len(planted & flagged) >= 3
    assert {p.name: p.read_bytes() for p in source.rglob("*.png")} == before  # nothing moved

    common = {"source_dir": str(source), "data_dir": str(data_dir), "image_size": 16}
    plain = prepare_dataset(params=common | {"dataset": "plain", "run_id": "p1"})
    cleaned = prepare_dataset(
        params=common | {"dataset": "clean", "run_id": "p2", "exclude_curation": "cur1"}
    )
    assert plain.skipped == {} and cleaned.skipped == {"excluded_by_curation": len(flagged)}
    manifest = read_table("dataset_manifest", data_dir=data_dir)
    a = manifest[manifest["run_id"] == "p1"].set_index("source_path")
    b = manifest[manifest["run_id"] == "p2"].set_index("source_path")
    excluded = b[b["status"] == "excluded_by_curation"]
    assert set(excluded.index) == flagged and excluded["path"].isna().all()
    kept = b.index.difference(excluded.index)
    # Every other image keeps its split: exclusion changes the dataset and nothing else.
    assert (a.loc[kept, "split"] == b.loc[kept, "split"]).all()
    assert (b.loc[kept, "status"] == "ok").all()


def test_the_flagged_images_show_in_a_prefect_artifact(tmp_path, data_dir):
    source, planted = make_folder(tmp_path / "src", per_class=10, flips=1, seed=2)
    state = curate_images(
        params={"source_dir": str(source), "features": "pixels", "run_id": "Cur_2.a"},
        return_state=True,
    )
    [artifact] = artifacts_of(state.state_details.flow_run_id, "curation-cur-2-a")
    assert "| label_issues | suspect_label |" in artifact.data
    assert any(Path(p).name in artifact.data for p in planted)


def test_bad_parameters_fail_before_any_work(tmp_path, data_dir):
    source, _ = make_folder(tmp_path / "src", per_class=3)
    with pytest.raises(ValidationError, match="LABEL=CLASS"):
        CurateParams(expect=["banana"])
    with pytest.raises(ValidationError, match="nothing to check"):
        CurateParams(label_issues=False)
    with pytest.raises(ConfigError, match="with no images"):
        curate(source, data_dir, expect=["green=banana"])
    with pytest.raises(ConfigError, match="no curation rows"):
        prepare_dataset(params={"source_dir": str(source), "exclude_curation": "nope"})
    assert read_table("curation", data_dir=data_dir).empty


def test_cli_curate_prints_the_counts_and_how_to_exclude(tmp_path, data_dir):
    source, _ = make_folder(tmp_path / "src", per_class=10, flips=1)
    result = CliRunner().invoke(
        app,
        ["curate", "--source-dir", str(source), "--features", "pixels", "--run-id", "c9"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "label_issues:" in result.output and "--exclude-curation c9" in result.output
