from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.cli import options as cli_app
from flows.cli.output import pipeline_summary
from flows.image_pipeline import image_pipeline
from flows.params import PipelineParams
from storage.errors import ConfigError, WeightsNotFoundError
from storage.parquet import read_table
from tasks.demo.gallery import GalleryServer, build_gallery, generate_pictures

TABLES = [
    *("scrape_manifest", "dataset_manifest", "epoch_history", "batch_history", "predictions"),
    "models",
]
TINY = {
    "prepare": {"image_size": 32, "val_fraction": 0.3},
    "train": {"epochs": 1, "batch_size": 8},
    "predict": {"batch_size": 16},
}


def rows(data_dir: Path, run_id: str) -> dict[str, int]:
    return {t: len(read_table(t, data_dir=data_dir, run_id=run_id)) for t in TABLES}


@pytest.fixture(scope="module")
def full_run(prefect_harness, tmp_path_factory):
    """One whole pipeline run on a tiny generated gallery (shared by the tests below)."""
    data_dir = tmp_path_factory.mktemp("data")
    gallery = build_gallery(tmp_path_factory.mktemp("site"), per_class=10, per_page=5)
    with GalleryServer(gallery.site_dir) as server:
        params = PipelineParams(
            data_dir=str(data_dir),
            run_id="full-1",
            sources=[f"{label}={server.url}{page}" for label, page in gallery.first_pages.items()],
            scrape={"allow_private_networks": True, "follow_pages": 1, "min_size": 64},
            targets=["forest"],
            **TINY,
        )
        result = image_pipeline(params=params)
    return data_dir, server.url, result


def test_whole_pipeline_runs_every_stage_under_one_run_id(full_run):
    data_dir, _, result = full_run
    assert result.run_id == "full-1"
    # Curation's default check needs MobileNet's ImageNet weights, absent here: skipped, said.
    assert "Label-issue check skipped" in " ".join(result.notes)
    assert result.stages_run == [
        "scrape_images",
        "prepare_dataset",
        "train_classifier",
        "promote_model",
        "predict_batch",
        "write_report",
    ]
    # The dataset's first model becomes its champion and predicts; the report says so.
    assert (result.decision, result.champion_run) == ("first", "full-1")
    assert "Model decision" in Path(result.report_path).with_name("report.md").read_text()
    counts = rows(data_dir, "full-1")
    assert all(counts.values()), counts
    scraped = read_table("scrape_manifest", data_dir=data_dir, run_id="full-1")
    ok = scraped[scraped["status"] == "ok"]
    assert sorted(ok["label"].value_counts().items()) == [("forest", 10), ("mountain", 10)]
    assert {"too_small", "http_error"} <= set(scraped["status"])  # thumbnails, broken link
    assert result.class_names == ["forest", "mountain"]
    assert 0.0 <= result.best_val_accuracy <= 1.0
    # Every path the result names exists, and they are all under the data root.
    assert set(result.scrape_manifest_paths) == {"mountain", "forest"}
    for path in result.paths():
        assert Path(path).exists(), path
        assert Path(path).resolve().is_relative_to(data_dir.resolve()), path
    assert Path(result.report_path).name == "report.html"
    predicted = read_table("predictions", data_dir=data_dir, run_id="full-1")
    val_images = read_table("dataset_manifest", data_dir=data_dir, run_id="full-1")
    assert predicted["image"].nunique() == (val_images["split"] == "val").sum()
    assert set(predicted["model_run"]) == {"full-1"}
    assert (val_images["split"] == "test").any()  # the pipeline's default test_fraction
    # Each stage's own result rides along, so `pixelpipe run` can say what each left out.
    assert sorted(s.label for s in result.scraped) == ["forest", "mountain"]
    assert all(s.reasons["too_small"] for s in result.scraped)
    assert result.prepared.manifest_path == result.dataset_manifest_path
    assert [p.predictions_path for p in result.predicted] == [result.predictions_path]
    lines = pipeline_summary(result)
    assert lines[0].startswith("run full-1: scrape_images") and lines[-1].endswith("report.html")


def test_scraping_holds_a_per_host_global_concurrency_limit(full_run):
    from prefect.client.orchestration import get_client

    from tasks.scrape.hosts import host_key
    from tasks.scrape.politeness import limit_name

    _, url, _ = full_run
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(limit_name(host_key(url)))
    assert limit.limit == 4 and limit.active_slots == 0  # per_host default; released after


def test_a_kept_model_leaves_predicting_to_the_champion(full_run):
    data_dir, _, first = full_run
    night = {"data_dir": str(data_dir), "dataset_dir": first.dataset_dir, **TINY}
    # A rule no model can meet: tonight's model is kept out, the champion predicts.
    kept = image_pipeline(
        params={**night, "run_id": "night-2", "promotion": {"min_improvement": 1.0}}
    )
    assert (kept.decision, kept.champion_run) == ("kept", "full-1")
    assert kept.stages_run[:2] == ["train_classifier", "promote_model"]
    predicted = read_table("predictions", data_dir=data_dir, run_id="night-2")
    assert set(predicted["model_run"]) == {"full-1"}
    report = Path(kept.report_path).with_name("report.md").read_text()
    assert "Model decision" in report and "is below min" in report
    # promote=never: no registry, tonight's model predicts.
    never = image_pipeline(params={**night, "run_id": "night-3", "promote": "never"})
    assert "promote_model" in never.stages_skipped and never.decision is None
    predicted = read_table("predictions", data_dir=data_dir, run_id="night-3")
    assert set(predicted["model_run"]) == {"night-3"}
    assert read_table("models", data_dir=data_dir, run_id="night-3").empty


def test_predict_only_with_an_existing_model_and_dataset(full_run):
    data_dir, _, first = full_run
    result = image_pipeline(
        params={
            "data_dir": str(data_dir),
            "run_id": "predict-only-1",
            "dataset_dir": first.dataset_dir,
            "model_path": first.model_path,
            "predict": {"split": "train"},
            "imagenet_weights": "none",  # the ImageNet stage's wiring, with random weights
            "imagenet_targets": ["alp"],
        }
    )
    assert result.stages_run == [
        "predict_batch",
        "predict_batch (resnet50 imagenet)",
        "write_report",
    ]
    assert set(result.stages_skipped) >= {"scrape_images", "prepare_dataset", "train_classifier"}
    counts = rows(data_dir, "predict-only-1")
    assert counts["predictions"] > 0
    assert counts["scrape_manifest"] == counts["dataset_manifest"] == counts["epoch_history"] == 0
    assert result.model_path == first.model_path and Path(result.report_path).is_file()
    # The ImageNet model's rows live under their own id, beside the trained model's.
    imagenet = read_table("predictions", data_dir=data_dir, run_id="predict-only-1-imagenet")
    trained = read_table("predictions", data_dir=data_dir, run_id="predict-only-1")
    assert set(imagenet["model"]) != set(trained["model"])
    assert imagenet["image"].nunique() == trained["image"].nunique() > 0
    assert result.imagenet_predictions_path


def test_start_from_a_source_folder_with_a_model_skips_scraping_and_training(
    full_run, data_dir, tmp_path
):
    generate_pictures(tmp_path / "pictures", per_class=8, seed=3)
    result = image_pipeline(
        params={
            "run_id": "from-folder-1",
            "source_dir": str(tmp_path / "pictures"),
            "model_path": full_run[2].model_path,
            "curate": "exclude",
            "curation": {"features": "pixels", "folds": 3},
            **TINY,
        }
    )
    assert result.stages_run == [
        "curate_images",
        "prepare_dataset",
        "predict_batch",
        "write_report",
    ]
    curation = read_table("curation", data_dir=data_dir, run_id="from-folder-1")
    assert len(curation) == 16 and set(curation["check"]) == {"label_issues"}
    prepared = read_table("dataset_manifest", data_dir=data_dir, run_id="from-folder-1")
    flagged = set(curation.loc[curation["verdict"] == "suspect_label", "sha256"])
    excluded = prepared[prepared["status"] == "excluded_by_curation"]
    assert set(excluded["sha256"]) == flagged  # exclude mode: prepare left exactly those out
    assert set(result.stages_skipped) >= {"scrape_images", "train_classifier"}
    counts = rows(data_dir, "from-folder-1")
    assert counts["scrape_manifest"] == counts["epoch_history"] == 0
    assert counts["dataset_manifest"] == 16 and counts["predictions"] > 0
    assert Path(result.dataset_dir).is_relative_to(data_dir)


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"source_dir": "/nonexistent/pictures"}, ConfigError, "is not a folder"),
        ({"dataset_dir": "/nonexistent/dataset"}, ConfigError, "needs train/ and val/"),
        (
            {"sources": ["mountain=http://127.0.0.1:9/a"], "targets": ["banana"]},
            ConfigError,
            "not classes of this run",
        ),
        (
            {"sources": ["mountain=http://127.0.0.1:9/a"], "imagenet_weights": "/no/such.h5"},
            WeightsNotFoundError,
            "--imagenet-weights PATH",  # run's own option, not predict's --weights
        ),
    ],
)
def test_bad_inputs_fail_before_any_stage_runs(prefect_harness, data_dir, params, error, message):
    with pytest.raises(error, match=message):
        image_pipeline(params=params)
    assert not any(data_dir.iterdir())  # no stage wrote anything


def test_a_dataset_folder_the_registry_cannot_name_fails_before_training(
    prefect_harness, data_dir, tmp_path
):
    for split in ("train", "val"):
        (tmp_path / "my photos" / split / "cats").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"dataset name .* 'my photos' is not a valid name"):
        image_pipeline(params={"dataset_dir": str(tmp_path / "my photos")})
    assert not any(data_dir.iterdir())


def test_invalid_values_are_refused_by_validation(prefect_harness, data_dir):
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match="epochs"):
        image_pipeline(params={"sources": ["a=http://127.0.0.1:9/"], "train": {"epochs": 0}})
    source = ["a=http://127.0.0.1:9/"]
    for bad in [
        {},
        {"sources": ["no-equals-sign"]},
        {"sources": ["a=x"], "dataset_dir": "d"},
        {"sources": source, "prepare": {"image_size": 16}},  # too small for small_cnn
        {"sources": source, "prepare": {"val_fraction": 0.6, "test_fraction": 0.5}},
    ]:
        with pytest.raises(ParameterTypeError):
            image_pipeline(params=bad)
    assert not any(data_dir.iterdir())


def test_run_command_takes_every_pipeline_parameter_and_a_params_file(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setitem(cli_app._HANDLERS, "run", seen.append)
    params_file = tmp_path / "run.yaml"
    params_file.write_text(
        "sources: [mountain=https://example.com/a.html]\ntrain: {epochs: 3, batch_size: 4}\n"
    )
    result = CliRunner().invoke(
        cli.app,
        [
            *("run", "--params", str(params_file), "--epochs", "2", "--rotation-range", "15"),
            *("--predict-batch-size", "8", "--sources", "forest=https://example.com/b.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    (got,) = seen
    assert got.source_pages() == {"forest": ["https://example.com/b.html"]}
    assert (got.train.epochs, got.train.batch_size, got.predict.batch_size) == (2, 4, 8)
    assert got.train.augmentation.rotation_range == 15
    bad = CliRunner().invoke(cli.app, ["run", "--sources", "x=https://e.com", "--epochs", "0"])
    assert bad.exit_code == 2 and "--epochs" in bad.output
