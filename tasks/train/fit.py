"""Training: the resumable fit (head, then optional fine-tuning), evaluation of best.keras,
and the Prefect tasks around them. Inputs are in inputs.py, histories in history.py."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import keras
import tensorflow as tf
from prefect import task
from prefect.cache_policies import NO_CACHE

from storage import files
from tasks.runtime import dtype_policy, logger
from tasks.train.history import HistoryRecorder, best_row
from tasks.train.inputs import make_datasets
from tasks.train.models import build_model, compile_model, unfreeze_top
from tasks.train.spec import TrainSpec


def precision(mixed: bool) -> contextlib.AbstractContextManager[None]:
    """Build and train under mixed_bfloat16 when asked; always restore the global policy."""
    return dtype_policy("mixed_bfloat16" if mixed else None)


def _backup(folder: Path) -> keras.callbacks.BackupAndRestore:
    # Kept after training (delete_checkpoint=False): a later resume_run with more epochs
    # continues from the last one instead of starting over.
    return keras.callbacks.BackupAndRestore(str(folder), delete_checkpoint=False)


def _callbacks(spec: TrainSpec, recorder: HistoryRecorder, backup) -> list:
    # Order matters for a crash between callbacks: rows, then best.keras, then the backup,
    # so a resumed epoch never has a backup without its history rows.
    checkpoint = keras.callbacks.ModelCheckpoint(
        spec.best_path, monitor="val_accuracy", mode="max", save_best_only=True
    )
    recorder.attach(checkpoint)
    callbacks = [recorder, checkpoint, backup]
    if spec.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=spec.early_stopping_patience
            )
        )
    return callbacks


def train_model(spec: TrainSpec, extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
    """Fit (or continue fitting) a run's model; return its best epoch and paths.

    Resumable: BackupAndRestore under models/<run>/backup/ restores the last finished epoch,
    and the history keeps the rows of the epochs before it."""
    keras.utils.set_random_seed(spec.seed)
    spec.model_dir.mkdir(parents=True, exist_ok=True)
    total = spec.epochs + (spec.fine_tune_epochs if spec.fine_tune_layers else 0)
    with precision(spec.mixed_precision):
        train_ds, val_ds = make_datasets(spec)
        model = build_model(
            spec.model, (*spec.image_size, 3), len(spec.class_names), weights=spec.weights,
            alpha=spec.alpha, optimizer=spec.optimizer, learning_rate=spec.learning_rate,
        )  # fmt: skip
        recorder = HistoryRecorder(spec, total)
        callbacks = _callbacks(spec, recorder, _backup(spec.model_dir / "backup" / "head"))
        fit = {"validation_data": val_ds, "verbose": 0, "shuffle": False}
        model.fit(train_ds, epochs=spec.epochs, callbacks=callbacks + list(extra_callbacks), **fit)
        if spec.fine_tune_layers and spec.fine_tune_epochs:
            done = fine_tune_start(spec.model_dir / "backup", recorder.epoch_rows)
            count = unfreeze_top(model, spec.fine_tune_layers)
            lr = (spec.learning_rate or model.optimizer.learning_rate.numpy()) / 10
            compile_model(model, spec.model, len(spec.class_names), spec.optimizer, float(lr))
            logger().info("fine-tuning %d backbone layers at learning rate %.2g", count, lr)
            folder = spec.model_dir / "backup" / "fine_tune"
            backup = start_backup(_backup(folder), model, folder, done)
            callbacks = _callbacks(spec, recorder, backup) + list(extra_callbacks)
            model.fit(train_ds, initial_epoch=done, epochs=done + spec.fine_tune_epochs,
                      callbacks=callbacks, **fit)  # fmt: skip
    paths = recorder.write()
    best = best_row(recorder.epoch_rows)
    return {
        "epochs_run": len(recorder.epoch_rows),
        "best_epoch": best["epoch"] if best else None,
        "best_val_accuracy": best["val_accuracy"] if best else None,
        "best_val_loss": best["val_loss"] if best else None,
        "history_path": str(paths[0]),
        "batch_history_path": str(paths[1]),
    }


def fine_tune_start(backup_root: Path, rows: Sequence[dict]) -> int:
    """The head phase's last epoch, after which fine-tuning runs. Noted the first time
    fine-tuning starts: after a crash in fine-tuning, the history also holds its epochs."""
    noted = backup_root / "fine_tune_start"
    if noted.is_file():
        return int(noted.read_text())
    start = max((r["epoch"] for r in rows), default=0)
    files.write_text(noted, str(start))
    return start


def start_backup(
    backup: keras.callbacks.BackupAndRestore, model, folder: Path, epoch: int
) -> keras.callbacks.BackupAndRestore:
    """Give a phase's empty backup folder the state the phase starts from (`epoch`).

    fit() starts at the epoch the last BackupAndRestore restored, if any, over its own
    `initial_epoch` (Keras keeps it on the model): a resumed head phase's epoch would carry
    over into fine-tuning. With its own backup always present, fine-tuning starts where its
    backup says: `epoch` the first time, the last finished epoch after a crash."""
    if not (folder.is_dir() and any(folder.iterdir())):  # else a crashed fine-tune's own state
        model.optimizer.build(model.trainable_variables)  # restored as saved, with its slots
        backup.set_model(model)
        backup.on_epoch_end(epoch - 1)  # writes the weights and "next epoch: `epoch`"
    return backup


def evaluate_model(spec: TrainSpec, model_path: str | Path) -> dict[str, float]:
    """Load a saved model and evaluate it on the validation split (no augmentation)."""
    with precision(spec.mixed_precision):
        model = keras.saving.load_model(model_path)
        _, val_ds = make_datasets(spec)
        loss, accuracy = model.evaluate(val_ds, verbose=0)
    return {"val_loss": float(loss), "val_accuracy": float(accuracy)}


def versions() -> dict[str, str]:
    try:
        pixelpipe = version("pixelpipe")
    except PackageNotFoundError:
        pixelpipe = "unknown"
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "pixelpipe": pixelpipe}


@task(name="train-model", retries=1, retry_delay_seconds=[2], cache_policy=NO_CACHE)
def train_model_task(spec: TrainSpec) -> dict:
    """Train; on a crash Prefect retries once and BackupAndRestore continues the run."""
    return train_model(spec)


@task(name="evaluate-best-model", cache_policy=NO_CACHE)
def evaluate_model_task(spec: TrainSpec, model_path: str) -> dict[str, float]:
    return evaluate_model(spec, model_path)
