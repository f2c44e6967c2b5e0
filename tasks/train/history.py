"""Training histories: every batch's and epoch's metrics into batch_history and epoch_history,
kept across resumes, and the best epoch read back from them."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import keras

from storage.parquet import read_table, write_table
from tasks.runtime import Progress, logger
from tasks.train.spec import TrainSpec


def existing_history(data_dir: str, run_id: str) -> tuple[list[dict], list[dict], str | None]:
    """(epoch rows, batch rows, run_date) already stored for a run: what a resume keeps."""
    epochs = read_table("epoch_history", data_dir=data_dir, run_id=run_id)
    batches = read_table("batch_history", data_dir=data_dir, run_id=run_id)
    run_date = None if epochs.empty else str(epochs["run_date"].iloc[0])

    def rows(frame) -> list[dict]:
        frame = frame.drop(columns=["run_date"]).astype(object)
        return frame.where(frame.notna(), None).to_dict("records")

    return rows(epochs), rows(batches), run_date


def best_row(rows: Sequence[dict]) -> dict | None:
    """The first epoch reaching the highest val_accuracy (ModelCheckpoint keeps the first)."""
    best = None
    for row in rows:
        if row.get("is_best"):
            best = row
    return best


class HistoryRecorder(keras.callbacks.Callback):
    """Every batch's and epoch's metrics, written to batch_history and epoch_history at the
    end of each epoch (each run's file rewritten atomically), plus one log line per epoch.

    On resume the rows of the epochs that finished before are kept and later ones dropped,
    so no epoch appears twice. Epochs are numbered from 1 (as Keras prints them), batches
    from 0; batch metrics are Keras' running means over the epoch so far."""

    def __init__(self, spec: TrainSpec, total_epochs: int, checkpoint=None) -> None:
        super().__init__()
        self.spec, self.total, self.checkpoint = spec, total_epochs, checkpoint
        self.epoch_rows, self.batch_rows, self.run_date = existing_history(
            spec.data_dir, spec.run_id
        )
        self._started = False
        self._current, self._t0 = 1, 0.0
        self.progress: Progress | None = None
        self.epoch_progress: Progress | None = None

    def attach(self, checkpoint) -> None:
        self.checkpoint = checkpoint

    def best_val_accuracy(self) -> float | None:
        row = best_row(self.epoch_rows)
        return None if row is None else row["val_accuracy"]

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if not self._started:  # the first epoch of this attempt: drop anything after it
            self._started = True
            self.epoch_rows = [r for r in self.epoch_rows if r["epoch"] <= epoch]
            self.batch_rows = [r for r in self.batch_rows if r["epoch"] <= epoch]
            if epoch:
                logger().info("resuming at epoch %d/%d", epoch + 1, self.total)
            self.progress = Progress(self.total, f"training {self.spec.model} ({self.spec.run_id})")
            self.progress.advance(epoch)
        if self.checkpoint is not None:
            self.checkpoint.best = self.best_val_accuracy()
        self._current = epoch + 1
        self._t0 = time.perf_counter()
        steps = (self.params or {}).get("steps")  # None when the dataset's length is unknown
        # Batches within the epoch: the terminal bar only (an artifact per epoch is clutter).
        self.epoch_progress = (
            Progress(steps, f"epoch {epoch + 1}/{self.total}", artifact=False) if steps else None
        )

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        logs = logs or {}
        self.batch_rows.append(self._base(self._current) | {"batch": int(batch)} | _metrics(logs))
        if self.epoch_progress is not None:
            # Keras's bar shows the epoch's running loss and accuracy: so does ours.
            shown = " ".join(f"{k} {v:.4f}" for k, v in _metrics(logs).items() if v is not None)
            self.epoch_progress.describe(f"epoch {self._current}/{self.total} {shown}".rstrip())
            self.epoch_progress.advance()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = {**(logs or {})}
        metrics = _metrics(logs, ("loss", "accuracy", "val_loss", "val_accuracy"))
        best = self.best_val_accuracy()
        val = metrics["val_accuracy"]
        is_best = best is None or (val is not None and val > best)
        row = self._base(epoch + 1) | metrics
        row |= {
            "is_best": bool(is_best),
            "checkpoint_path": str(self.spec.best_path) if is_best else None,
            "seconds": time.perf_counter() - self._t0,
            "learning_rate": _learning_rate(self.model),
            "finished_at": datetime.now(UTC),
        }
        self.epoch_rows.append(row)
        self.write()
        if self.progress is not None:
            self.progress.advance()
        logger().info(
            "epoch %d/%d: loss %.4f accuracy %.4f val_loss %.4f val_accuracy %.4f (%.1f s)%s",
            epoch + 1, self.total, *(_nan(metrics[k]) for k in metrics), row["seconds"],
            " best" if is_best else "",
        )  # fmt: skip

    def _base(self, epoch: int) -> dict:
        return {"run_id": self.spec.run_id, "model": self.spec.model, "epoch": epoch}

    def write(self) -> tuple[Path, Path]:
        run_date = self.run_date or datetime.now(UTC).date().isoformat()
        self.run_date = run_date
        kw = {"run_id": self.spec.run_id, "data_dir": self.spec.data_dir, "run_date": run_date}
        return (
            write_table("epoch_history", self.epoch_rows, **kw),
            write_table("batch_history", self.batch_rows, **kw),
        )


def _metrics(logs: dict, names: Sequence[str] = ("loss", "accuracy")) -> dict[str, float | None]:
    return {n: (float(logs[n]) if logs.get(n) is not None else None) for n in names}


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _learning_rate(model: keras.Model) -> float | None:
    try:
        return float(model.optimizer.learning_rate.numpy())
    except (AttributeError, TypeError, ValueError):
        return None
