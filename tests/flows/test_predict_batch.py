"""The predict_batch flow on a real Prefect server: equal to the classic per-image recipe, sharded,
Parquet rows, artifacts, trained models by run id, the CLI, and failing before any work."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter
from pydantic import ValidationError
from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.params import PredictParams
from flows.predict_batch import predict_batch
from storage.errors import WeightsNotFoundError
from storage.parquet import read_table
from tasks.predict.engines.keras import build_backbone
from tasks.predict.labels import imagenet_labels
from tests.flows.artifacts import progress_artifacts
from tests.tasks.predict.test_infer import make_bad_files, make_images


def classic_recipe(model: keras.Model, path: str) -> np.ndarray:
    """The per-image Keras recipe, as written in countless tutorials."""
    image = keras.utils.load_img(path, target_size=(224, 224))
    x = np.expand_dims(keras.utils.img_to_array(image), axis=0)
    x = keras.applications.resnet50.preprocess_input(x)
    return model.predict(x, verbose=0)[0]


def task_run_names(flow_run_id) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]})  # type: ignore[arg-type]
        )
    return sorted(r.name for r in runs)


def test_resnet50_flow_equals_the_classic_per_image_recipe(prefect_harness, data_dir, tmp_path):
    files = make_images(tmp_path / "in")
    bad = make_bad_files(tmp_path / "in")
    # The same seeded random weights as the flow's weights=None, softmax on top as usual.
    model = build_backbone("resnet50", None, classifier_activation="softmax")
    classic = {p: classic_recipe(model, str(p)) for p in files.values()}
    # Targets by name and by WordNet id: banana, and the class ranked 2nd for the first image.
    second = int(np.argsort(-classic[files["rgb"]])[1])
    target_idx = [954, second]
    params = PredictParams(
        inputs=[str(tmp_path / "in")],
        weights=None,
        batch_size=2,
        shard_size=3,
        top_k=3,
        targets=["banana", imagenet_labels().wnids[second]],
        run_id="r-resnet",
        # The classic recipe, one flag away from the ImageNet protocol ResNet50 defaults to.
        resize_mode="stretch",
        interpolation="nearest",
    )
    state = predict_batch(params=params, return_state=True)
    result = state.result()
    assert (result.images, result.ok, result.corrupt, result.missing) == (7, 5, 2, 0)
    assert result.shards == 3 and len(result.predictions_files) == 3
    assert result.model == "resnet50@random(seed=0)"
    classic_prep = "stretch/nearest; keras.applications.resnet50.preprocess_input"
    assert result.preprocessing == classic_prep
    # One task run per shard: the number of runs grows with shards, not images.
    assert len([n for n in task_run_names(state.state_details.flow_run_id) if "shard" in n]) == 3
    # ...and one progress artifact for the run, not one per shard.
    assert progress_artifacts(state.state_details.flow_run_id) == [("predicting 7 images", 100.0)]

    rows = read_table("predictions", run_id="r-resnet")
    assert set(rows["image"]) == {p.resolve().as_posix() for p in [*files.values(), *bad.values()]}
    assert (rows["preprocessing"] == classic_prep).all()
    corrupt = rows[rows["status"] == "corrupt"]
    assert len(corrupt) == 2 and corrupt["rank"].isna().all() and corrupt["error"].notna().all()

    for path, probs in classic.items():
        mine = rows[rows["image"] == path.resolve().as_posix()].sort_values("rank")
        assert mine["rank"].tolist() == [1, 2, 3] and (mine["status"] == "ok").all()
        got = mine["probability"].to_numpy(dtype=np.float64)
        # Same values at the same ranks (labels could swap only on exact ties)...
        np.testing.assert_allclose(got, np.sort(probs)[::-1][:3], atol=1e-4, rtol=1e-3)
        # ...and each row's class has the probability the recipe gives it.
        np.testing.assert_allclose(got, probs[mine["label_index"].to_numpy(int)], atol=1e-4)
        assert mine["target_probability"].iloc[0] == pytest.approx(
            probs[target_idx].sum(), abs=1e-4
        )
        # is_target marks the rows whose class is a target (within top_k here).
        assert mine["is_target"].tolist() == mine["label_index"].isin(target_idx).tolist()
    assert result.target_hits == rows[rows["is_target"].fillna(False)]["image"].nunique() >= 1

    with get_client(sync_client=True) as client:
        key = "predictions-r-resnet-" + Path(result.predictions_files[0]).stem.split("-")[3]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="predictions-r-resnet-"))
        )
    assert artifacts and artifacts[0].type == "table" and key.startswith("predictions-r-resnet")
    table = json.loads(artifacts[0].data)
    assert len(table) == 5 and {"image", "label", "probability", "is_target"} <= set(table[0])


def tiny_softmax_model(model_dir: Path, classes: list[str]) -> None:
    """An (untrained) 3-class model at 16x16 saved like train_classifier does, with its card."""
    dense = keras.layers.Dense(len(classes), activation="softmax")
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(), dense]
    )
    # Weights from NumPy's seeded generator, not Keras's initializers: those also draw from
    # Python's global `random`, which Prefect's threads share, so a test run could get weights
    # under which no image ranks the target class in its top 2 (it happened once in CI).
    rng = np.random.default_rng(5)
    dense.set_weights([rng.normal(0, 0.05, (16 * 16 * 3, len(classes))), np.zeros(len(classes))])
    model_dir.mkdir(parents=True)
    model.save(model_dir / "best.keras")
    card = {
        "run_id": model_dir.name,
        "model": "tiny",
        "class_names": classes,
        "image_size": [16, 16],
        "label_mode": "int",
        "num_classes": len(classes),
    }
    (model_dir / "model_card.json").write_text(json.dumps(card))


def test_trained_model_by_run_id_on_a_dataset_split_via_the_cli(prefect_harness, data_dir):
    classes = ["apple", "banana", "cherry"]
    tiny_softmax_model(data_dir / "models" / "train-1", classes)
    for cls in classes:
        make_images(data_dir / "datasets" / "fruit" / "val" / cls, seed=len(cls))
    args = ["predict", "--model", "train-1", "--dataset-dir", str(data_dir / "datasets/fruit")]
    args += ["--top-k", "2", "--targets", "banana", "--run-id", "p1", "--shard-size", "4"]
    out = CliRunner().invoke(cli.app, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "15 images: 15 ok, 0 corrupt, 0 missing" in out.output
    assert "top-1 label" in out.output and "predictions:" in out.output
    rows = read_table("predictions", run_id="p1")
    assert len(rows) == 30 and set(rows["label"]) <= set(classes)
    assert rows["model"].str.startswith("tiny@").all()
    # The banana rows are the target rows (within the top 2 of 3 classes).
    assert (rows["is_target"] == (rows["label"] == "banana")).all()
    assert rows["is_target"].any()
    files = sorted(p.name for p in (data_dir / "warehouse/predictions").rglob("p1-*.parquet"))
    assert len(files) == 4
    day1 = data_dir / "warehouse/predictions/run_date=2026-01-01"  # as if run on an earlier day
    day1.mkdir()
    for part in (data_dir / "warehouse/predictions").rglob("p1-*.parquet"):
        part.rename(day1 / part.name)

    # Running the run id again replaces its files (here: fewer shards, another day), never
    # duplicates rows; the old parts go only after the new one is written.
    again = predict_batch(
        params={"model": "train-1", "dataset_dir": str(data_dir / "datasets/fruit"), "run_id": "p1"}
    )
    assert again.shards == 1 and len(read_table("predictions", run_id="p1")) == 45
    assert list(day1.iterdir()) == [] and [Path(p).exists() for p in again.predictions_files] == [
        True
    ]


def test_bad_parameters_fail_before_any_work(prefect_harness, data_dir, tmp_path):
    make_images(tmp_path / "in")
    with pytest.raises(ValidationError, match="target_rank must be at most top_k"):
        PredictParams(inputs=[str(tmp_path / "in")], top_k=2, target_rank=3)
    with pytest.raises(WeightsNotFoundError, match="--weights PATH"):
        predict_batch(params={"inputs": [str(tmp_path / "in")], "weights": str(tmp_path / "x.h5")})
    assert not (data_dir / "warehouse").exists()
