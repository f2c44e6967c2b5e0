"""The train_classifier flow on a real (temporary) Prefect server and tiny generated data."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest
from prefect.exceptions import ParameterTypeError

from flows.params import TrainParams
from flows.train_classifier import train_classifier
from storage.errors import ConfigError, WeightsNotFoundError
from storage.parquet import read_table
from tasks.train import fit as train_tasks
from tests.tasks.train.test_fit import make_image_dataset

CARD_KEYS = {
    "run_id", "model", "class_names", "image_size", "label_mode", "num_classes", "best_epoch",
    "best_val_accuracy", "best_val_loss", "dataset_dir", "dataset_manifest_sha256", "params",
    "versions", "created_at",
}  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_image_dataset(tmp_path_factory.mktemp("flowds"))


class CrashOnce(keras.callbacks.Callback):
    """Raise after epoch 1 of the first attempt only: the task's Prefect retry resumes."""

    def __init__(self) -> None:
        super().__init__()
        self.crashed = False

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0 and not self.crashed:
            self.crashed = True
            raise RuntimeError("simulated crash after epoch 1")


def test_flow_trains_evaluates_and_writes_a_model_card(prefect_harness, data_dir, dataset):
    result = train_classifier(
        params={"dataset_dir": str(dataset), "epochs": 2, "batch_size": 8, "run_id": "t1"}
    )
    assert result.run_id == "t1" and result.epochs_run == 2
    assert result.model_path.endswith("models/t1/best.keras")
    assert result.evaluated_val_accuracy == pytest.approx(result.best_val_accuracy, abs=1e-6)
    card = json.loads(Path(result.model_card_path).read_text())
    assert set(card) >= CARD_KEYS
    assert card["class_names"] == ["dark", "light"] and card["label_mode"] == "binary"
    assert card["image_size"] == [32, 32] and card["num_classes"] == 2
    assert card["best_epoch"] == result.best_epoch and card["status"] == "trained"
    assert card["params"]["epochs"] == 2 and set(card["versions"]) >= {"tensorflow", "keras"}
    history = read_table("epoch_history", data_dir=data_dir, run_id="t1")
    assert history["epoch"].tolist() == [1, 2]
    assert len(read_table("batch_history", data_dir=data_dir, run_id="t1")) == 12


def test_resume_run_continues_from_the_last_finished_epoch(prefect_harness, data_dir, dataset):
    first = train_classifier(params=TrainParams(dataset_dir=str(dataset), epochs=1, batch_size=8))
    before = read_table("epoch_history", data_dir=data_dir, run_id=first.run_id)
    resumed = train_classifier(params=TrainParams(resume_run=first.run_id, epochs=2))
    assert resumed.run_id == first.run_id and resumed.epochs_run == 2
    after = read_table("epoch_history", data_dir=data_dir, run_id=first.run_id)
    assert after["epoch"].tolist() == [1, 2]
    assert after["finished_at"].iloc[0] == before["finished_at"].iloc[0]  # not retrained
    assert len(read_table("batch_history", data_dir=data_dir, run_id=first.run_id)) == 12
    with pytest.raises(ConfigError, match="trained with other model"):
        train_classifier(params=TrainParams(resume_run=first.run_id, model="cifar_cnn"))
    # Re-running with the same run_id (a retried pipeline) continues too: nothing retrained.
    again = train_classifier(
        params=TrainParams(dataset_dir=str(dataset), run_id=first.run_id, epochs=2, batch_size=8)
    )
    assert again.epochs_run == 2 and again.best_epoch == resumed.best_epoch
    final = read_table("epoch_history", data_dir=data_dir, run_id=first.run_id)
    assert final["finished_at"].tolist() == after["finished_at"].tolist()
    with pytest.raises(ConfigError, match="trained with other model"):
        train_classifier(
            params=TrainParams(dataset_dir=str(dataset), run_id=first.run_id, model="cifar_cnn")
        )


def test_a_crash_is_retried_by_prefect_and_resumes(prefect_harness, data_dir, dataset, monkeypatch):
    crash, fit = CrashOnce(), train_tasks.train_model
    # The task trains through the real train_model; this only hands it the crashing callback.
    monkeypatch.setattr(train_tasks, "train_model", lambda spec: fit(spec, [crash]))
    result = train_classifier(
        params={"dataset_dir": str(dataset), "epochs": 2, "batch_size": 8, "run_id": "c1"}
    )
    assert crash.crashed and result.epochs_run == 2
    history = read_table("epoch_history", data_dir=data_dir, run_id="c1")
    assert history["epoch"].tolist() == [1, 2]
    assert len(read_table("batch_history", data_dir=data_dir, run_id="c1")) == 12


def test_the_minimum_image_size_is_checked_by_the_parameters_and_the_flow(
    prefect_harness, data_dir, tmp_path
):
    with pytest.raises(ValueError, match="resnet50_transfer needs images of at least 32 px"):
        TrainParams(model="resnet50_transfer", image_size=24, weights="none")
    # No image_size: the flow checks the dataset's own size before any training.
    small = make_image_dataset(tmp_path / "small", per_class=4, size=16, val=2)
    with pytest.raises(ConfigError, match="small_cnn needs images of at least 18 px, got 16"):
        train_classifier(params={"dataset_dir": str(small), "run_id": "s1"})
    assert not (data_dir / "models" / "s1").exists()


def test_invalid_parameters_are_rejected_before_any_training(prefect_harness, data_dir, dataset):
    with pytest.raises(ParameterTypeError):
        train_classifier(params={"dataset_dir": str(dataset), "epochs": 0})
    with pytest.raises(ParameterTypeError):
        train_classifier(params={"dataset_dir": str(dataset), "augmentation": {"zoom": 2}})
    with pytest.raises(ParameterTypeError):
        train_classifier(params={"dataset_dir": str(dataset), "fine_tune_layers": 3})
    with pytest.raises(ConfigError, match="no train/ folder"):
        train_classifier(params={"dataset_dir": str(data_dir), "run_id": "bad"})
    with pytest.raises(ConfigError, match="dataset_dir is required"):
        train_classifier(params={"run_id": "bad"})
    assert not (data_dir / "models" / "bad").exists()
    assert read_table("epoch_history", data_dir=data_dir).empty


def test_missing_weights_fail_before_training_with_the_file_name(
    prefect_harness, data_dir, dataset, monkeypatch
):
    monkeypatch.setenv("PIXELPIPE_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as caught:
        train_classifier(
            params={"dataset_dir": str(dataset), "model": "resnet50_transfer", "run_id": "w1"}
        )
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in str(caught.value)
    assert "--weights" in str(caught.value)
    assert not (data_dir / "models" / "w1").exists()


def test_cli_train_and_augment_preview(prefect_harness, data_dir, dataset, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import commands as cli

    runner = CliRunner()
    out = tmp_path / "grid.png"
    args = ["augment-preview", "--dataset-dir", str(dataset), "--out", str(out)]
    result = runner.invoke(cli.app, [*args, "--variants", "3", "--rotation-range", "20"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and str(out) in result.output
    args = ["train", "--dataset-dir", str(dataset), "--epochs", "1", "--run-id", "cli1"]
    result = runner.invoke(cli.app, [*args, "--batch-size", "16", "--horizontal-flip"])
    assert result.exit_code == 0, result.output
    assert "run cli1: small_cnn, 1 epochs, best epoch 1" in result.output
    assert (data_dir / "models" / "cli1" / "best.keras").is_file()
    result = runner.invoke(cli.app, ["train", "--resume-run", "nope"])
    assert result.exit_code == 1 and "cannot resume run 'nope'" in result.output
