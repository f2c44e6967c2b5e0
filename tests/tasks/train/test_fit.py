"""Training on tiny generated datasets: the input pipeline, histories, checkpoints, resume."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from storage.errors import ConfigError
from storage.parquet import read_table
from tasks.train.fit import evaluate_model, train_model
from tasks.train.history import HistoryRecorder, best_row
from tasks.train.inputs import make_datasets
from tasks.train.spec import TrainSpec, scan_dataset


def make_image_dataset(
    root: Path,
    per_class: int = 24,
    size: int = 32,
    classes: tuple[str, ...] = ("dark", "light"),
    val: int = 8,
    seed: int = 0,
) -> Path:
    """`root/train/<class>/` and `root/val/<class>/` PNGs: each class a visibly different
    brightness with noise and a random bar, so a tiny CNN separates them in an epoch or two."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        level = 40 + 170 * index / max(1, len(classes) - 1)
        for i in range(per_class + val):
            pixels = rng.normal(level, 25, (size, size, 3))
            row = rng.integers(0, size - 4)
            pixels[row : row + 3] = 255 - level
            split = "train" if i < per_class else "val"
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:03}.png")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_image_dataset(tmp_path_factory.mktemp("ds"))


def spec_for(dataset: Path, data_dir: Path, **overrides) -> TrainSpec:
    info = scan_dataset(dataset, overrides.get("validation_split", 0.0))
    values = {
        "run_id": "r1",
        "data_dir": str(data_dir),
        "dataset_dir": info.root,
        "model": "small_cnn",
        "class_names": info.class_names,
        "image_size": info.image_size,
        "epochs": 2,
        "batch_size": 8,
    }
    return TrainSpec(**(values | overrides))


class CrashAfter(keras.callbacks.Callback):
    """Simulate a crash (power cut, OOM kill) right after an epoch finished."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError(f"simulated crash after epoch {self.epoch}")


def test_scan_dataset_describes_the_folder(dataset):
    info = scan_dataset(dataset)
    assert info.class_names == ["dark", "light"] and info.label_mode == "binary"
    assert info.train_counts == {"dark": 24, "light": 24}
    assert info.val_counts == {"dark": 8, "light": 8}
    assert info.image_size == (32, 32) and len(info.manifest_sha256) == 64
    assert scan_dataset(dataset).manifest_sha256 == info.manifest_sha256


def test_scan_dataset_rejects_bad_layouts_with_what_to_change(tmp_path):
    with pytest.raises(ConfigError, match="no train/ folder"):
        scan_dataset(tmp_path)
    (tmp_path / "train" / "only").mkdir(parents=True)
    with pytest.raises(ConfigError, match="at least 2 class folders"):
        scan_dataset(tmp_path)
    (tmp_path / "train" / "other").mkdir()
    with pytest.raises(ConfigError, match="hold no images"):
        scan_dataset(tmp_path)
    make_image_dataset(tmp_path / "noval", per_class=4, val=0)
    with pytest.raises(ConfigError, match="set validation_split"):
        scan_dataset(tmp_path / "noval")
    assert scan_dataset(tmp_path / "noval", validation_split=0.25).has_val is False


def test_pipeline_labels_shuffles_and_augments_train_only(dataset, tmp_path):
    spec = spec_for(
        dataset, tmp_path, augmentation={"horizontal_flip": True, "vertical_flip": True}
    )
    train, val = make_datasets(spec)
    x, y = next(iter(train))
    assert x.dtype.name == "float32" and x.shape == (8, 32, 32, 3) and y.shape == (8, 1)
    assert float(np.max(x)) > 1.0  # raw 0..255 pixels: the model rescales
    first = [float(v) for v in np.concatenate([b[1].numpy().ravel() for b in train])]
    second = [float(v) for v in np.concatenate([b[1].numpy().ravel() for b in train])]
    assert sorted(first) == sorted(second) and first != second  # reshuffled each epoch
    # Validation is never augmented: two passes give identical pixels, in file order.
    v1 = np.concatenate([b[0].numpy() for b in val])
    v2 = np.concatenate([b[0].numpy() for b in val])
    assert np.array_equal(v1, v2)
    raw = np.asarray(Image.open(dataset / "val" / "dark" / "024.png"), "float32")
    assert np.array_equal(v1[0], raw)
    three = make_image_dataset(tmp_path / "three", per_class=4, val=2, classes=("a", "b", "c"))
    _, val3 = make_datasets(spec_for(three, tmp_path))
    labels = np.concatenate([b[1].numpy() for b in val3])
    assert labels.dtype.kind == "i" and sorted(set(labels.tolist())) == [0, 1, 2]


def test_validation_split_holds_out_a_share_of_train(dataset, tmp_path):
    import shutil

    root = tmp_path / "noval"
    shutil.copytree(dataset / "train", root / "train")
    spec = spec_for(root, tmp_path, validation_split=0.25)
    train, val = make_datasets(spec)
    assert sum(len(b[1]) for b in train) == 36 and sum(len(b[1]) for b in val) == 12


def test_best_epoch_is_the_first_with_the_highest_val_accuracy(dataset, tmp_path):
    spec = spec_for(dataset, tmp_path)
    recorder = HistoryRecorder(spec, total_epochs=4)
    recorder.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    for epoch, acc in enumerate([0.5, 0.75, 0.75, 0.6]):
        recorder.on_epoch_begin(epoch)
        recorder.on_train_batch_end(0, {"loss": 1.0, "accuracy": 0.5})
        recorder.on_epoch_end(epoch, {"loss": 1, "accuracy": 1, "val_loss": 1, "val_accuracy": acc})
    flags = [r["is_best"] for r in recorder.epoch_rows]
    assert flags == [True, True, False, False]
    assert best_row(recorder.epoch_rows)["epoch"] == 2
    stored = read_table("epoch_history", data_dir=tmp_path, run_id="r1")
    assert stored["epoch"].tolist() == [1, 2, 3, 4]
    assert stored["is_best"].tolist() == flags
    assert stored["checkpoint_path"].notna().tolist() == flags


def check_trained(
    spec: TrainSpec, summary: dict, epochs: int, batches_per_epoch: int, evaluate: bool = True
) -> None:
    """Checkpoint loadable, histories complete and continuous, best epoch evaluates the same."""
    assert spec.best_path.is_file()
    epochs_df = read_table("epoch_history", data_dir=spec.data_dir, run_id=spec.run_id)
    batches = read_table("batch_history", data_dir=spec.data_dir, run_id=spec.run_id)
    assert epochs_df["epoch"].tolist() == list(range(1, epochs + 1))
    assert len(batches) == epochs * batches_per_epoch
    assert (
        batches.groupby("epoch")["batch"].apply(list).tolist()
        == [list(range(batches_per_epoch))] * epochs
    )
    assert summary["epochs_run"] == epochs
    best = epochs_df[epochs_df["is_best"]].iloc[-1]
    assert summary["best_epoch"] == best["epoch"]
    assert epochs_df["val_accuracy"].max() == best["val_accuracy"]
    assert (epochs_df["seconds"] > 0).all() and epochs_df["learning_rate"].notna().all()
    if not evaluate:
        return
    evaluated = evaluate_model(spec, spec.best_path)
    assert evaluated["val_accuracy"] == pytest.approx(summary["best_val_accuracy"], abs=1e-6)
    assert evaluated["val_loss"] == pytest.approx(summary["best_val_loss"], rel=1e-4)


@pytest.mark.parametrize(
    "model", ["small_cnn", "cifar_cnn", pytest.param("mobilenet_transfer", marks=pytest.mark.slow)]
)
def test_training_writes_checkpoint_histories_and_best_epoch(dataset, tmp_path, model):
    epochs = 1 if model == "mobilenet_transfer" else 2  # a bigger graph: keep it short
    spec = spec_for(
        dataset, tmp_path, model=model, epochs=epochs, augmentation={"horizontal_flip": True}
    )
    summary = train_model(spec)
    check_trained(spec, summary, epochs, batches_per_epoch=6, evaluate=model == "small_cnn")
    loaded = keras.saving.load_model(spec.best_path)
    raw = np.asarray(Image.open(dataset / "val" / "light" / "024.png"), "float32")[None]
    assert loaded.predict(raw, verbose=0).shape == (1, 1)  # raw pixels in, probability out


@pytest.mark.slow
def test_resnet50_transfer_trains_with_random_weights(dataset, tmp_path):
    spec = spec_for(dataset, tmp_path, model="resnet50_transfer", epochs=1, batch_size=16)
    summary = train_model(spec)
    check_trained(spec, summary, epochs=1, batches_per_epoch=3, evaluate=False)


def test_resume_after_a_crash_continues_at_the_next_epoch(dataset, tmp_path):
    spec = spec_for(dataset, tmp_path, epochs=2)
    with pytest.raises(RuntimeError, match="simulated crash after epoch 1"):
        train_model(spec, extra_callbacks=[CrashAfter(1)])
    after_crash = read_table("epoch_history", data_dir=tmp_path, run_id="r1")
    assert after_crash["epoch"].tolist() == [1]
    assert (spec.model_dir / "backup").is_dir()
    summary = train_model(spec)
    check_trained(spec, summary, epochs=2, batches_per_epoch=6)
    # Epoch 1's rows are the ones written before the crash, not a second training of it.
    resumed = read_table("epoch_history", data_dir=tmp_path, run_id="r1")
    assert resumed["finished_at"].iloc[0] == after_crash["finished_at"].iloc[0]


def test_mixed_precision_trains_and_restores_the_policy(dataset, tmp_path):
    spec = spec_for(dataset, tmp_path, epochs=1, mixed_precision=True)
    summary = train_model(spec)
    assert keras.config.dtype_policy().name == "float32"
    model = keras.saving.load_model(spec.best_path)
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in model.layers)
    assert model.layers[-1].dtype_policy.name == "float32"  # the head stays float32
    assert summary["best_val_accuracy"] is not None


class BackboneWatch(keras.callbacks.Callback):
    """Per fit: the backbone layers whose weights the fit optimizes (model.trainable_weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.phases: list[list[str]] = []

    def on_train_begin(self, logs=None) -> None:
        backbone = next(x for x in self.model.layers if isinstance(x, keras.Model))
        optimized = {id(w) for w in self.model.trainable_weights}
        self.phases.append(
            [x.name for x in backbone.layers if any(id(w) in optimized for w in x.weights)]
        )


@pytest.mark.slow
def test_fine_tuning_unfreezes_top_layers_at_a_tenth_of_the_learning_rate(dataset, tmp_path):
    spec = spec_for(
        dataset, tmp_path, model="mobilenet_transfer", epochs=1, batch_size=16,
        fine_tune_layers=3, fine_tune_epochs=1, learning_rate=1e-3,
    )  # fmt: skip
    watch = BackboneWatch()
    summary = train_model(spec, extra_callbacks=[watch])
    head, tuned = watch.phases
    assert head == []  # the head phase trains the new layers only
    # The top 3 backbone layers with weights, less BatchNormalization (it stays frozen).
    assert tuned == ["conv_pw_13"]
    history = read_table("epoch_history", data_dir=tmp_path, run_id="r1")
    assert summary["epochs_run"] == 2 and history["epoch"].tolist() == [1, 2]
    assert history["learning_rate"].tolist() == pytest.approx([1e-3, 1e-4])
    assert len(read_table("batch_history", data_dir=tmp_path, run_id="r1")) == 2 * 3
    assert spec.best_path.is_file()


@pytest.mark.slow
def test_fine_tuning_after_a_resumed_head_phase_starts_where_the_head_ended(dataset, tmp_path):
    # The resumed head phase restores epoch 1 from its backup; Keras keeps that on the model,
    # and fine-tuning must still start after the head's last epoch (2), not at 1.
    spec = spec_for(
        dataset, tmp_path, model="mobilenet_transfer", epochs=2, batch_size=16,
        fine_tune_layers=3, fine_tune_epochs=1, learning_rate=1e-3,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="simulated crash after epoch 1"):
        train_model(spec, extra_callbacks=[CrashAfter(1)])
    summary = train_model(spec)
    history = read_table("epoch_history", data_dir=tmp_path, run_id="r1")
    assert summary["epochs_run"] == 3 and history["epoch"].tolist() == [1, 2, 3]
    assert history["learning_rate"].tolist() == pytest.approx([1e-3, 1e-3, 1e-4])


@pytest.mark.slow
def test_a_crash_while_fine_tuning_resumes_it_without_extra_epochs(dataset, tmp_path):
    spec = spec_for(
        dataset, tmp_path, model="mobilenet_transfer", epochs=1, batch_size=16,
        fine_tune_layers=3, fine_tune_epochs=2, learning_rate=1e-3,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="simulated crash after epoch 2"):
        train_model(spec, extra_callbacks=[CrashAfter(2)])
    summary = train_model(spec)
    history = read_table("epoch_history", data_dir=tmp_path, run_id="r1")
    assert summary["epochs_run"] == 3 and history["epoch"].tolist() == [1, 2, 3]
    assert history["learning_rate"].tolist() == pytest.approx([1e-3, 1e-4, 1e-4])
