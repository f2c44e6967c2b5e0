"""Training: the tf.data input pipeline, history callbacks, resumable fit, model card."""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from prefect import task
from prefect.cache_policies import NO_CACHE

from storage.errors import ConfigError
from storage.files import TF_IMAGE_EXTENSIONS as TF_EXTENSIONS
from storage.layout import Layout
from storage.model_card import model_file
from storage.parquet import read_table, write_table
from tasks.runtime import Progress, logger
from tasks.train.augment import build_augmentation
from tasks.train.models import build_model, compile_model, unfreeze_top

# Decoded images are cached in memory (as uint8) when they take less than this.
CACHE_LIMIT_BYTES = 4 << 30
# One RandomAffine for all geometric knobs (False: one Keras layer per knob; benchmarks).
FUSED_AUGMENTATION = True
# Extension point: callbacks appended here join every fit (tests simulate a crash with one).
EXTRA_CALLBACKS: list[keras.callbacks.Callback] = []


@dataclass
class DatasetInfo:
    """What the flow learns about a dataset folder before training (no TensorFlow needed)."""

    root: str
    class_names: list[str]
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    image_size: tuple[int, int]
    manifest_sha256: str
    has_val: bool

    @property
    def label_mode(self) -> str:
        return "binary" if len(self.class_names) == 2 else "int"


@dataclass
class TrainSpec:
    """Everything one training run needs, as plain values (a task argument)."""

    run_id: str
    data_dir: str
    dataset_dir: str
    model: str
    class_names: list[str]
    image_size: tuple[int, int]
    epochs: int
    batch_size: int = 32
    augmentation: dict[str, Any] = field(default_factory=dict)
    optimizer: str | None = None
    learning_rate: float | None = None
    weights: str | None = None
    alpha: float = 0.25
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 0
    early_stopping_patience: int | None = None
    mixed_precision: bool = False
    seed: int = 42
    validation_split: float = 0.0

    @property
    def model_dir(self) -> Path:
        return Layout.at(self.data_dir).model_dir(self.run_id)

    @property
    def best_path(self) -> Path:
        return model_file(self.model_dir)

    @property
    def label_mode(self) -> str:
        return "binary" if len(self.class_names) == 2 else "int"


def _images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in TF_EXTENSIONS)


def scan_dataset(dataset_dir: str | Path, validation_split: float = 0.0) -> DatasetInfo:
    """Check a `train/<class>/` (+ optional `val/<class>/`) folder and describe it; every
    problem is a ConfigError that says what to change."""
    from PIL import Image

    root = Path(dataset_dir).expanduser().resolve()
    train = root / "train"
    if not train.is_dir():
        raise ConfigError(f"dataset_dir {root} has no train/ folder (expected train/<class>/)")
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise ConfigError(f"{train} needs at least 2 class folders, found {classes}")
    files = {c: _images(train / c) for c in classes}
    if empty := [c for c, f in files.items() if not f]:
        raise ConfigError(f"class folder(s) {empty} under {train} hold no images")
    val, has_val, val_counts = root / "val", (root / "val").is_dir(), {}
    if has_val:
        val_files = {c: _images(val / c) if (val / c).is_dir() else [] for c in classes}
        extra = sorted({p.name for p in val.iterdir() if p.is_dir()} - set(classes))
        if extra or not any(val_files.values()):
            raise ConfigError(f"{val} must hold images in the same class folders as train/")
        val_counts = {c: len(f) for c, f in val_files.items()}
    elif not 0 < validation_split < 1:
        raise ConfigError(f"{root} has no val/ folder: add one, or set validation_split (0.2)")
    with Image.open(files[classes[0]][0]) as first:
        size = (first.height, first.width)
    listing = sorted(str(f.relative_to(root)) for f in root.glob("*/*/*") if f.is_file())
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()
    counts = {c: len(f) for c, f in files.items()}
    return DatasetInfo(str(root), classes, counts, val_counts, size, digest, has_val)


def make_datasets(spec: TrainSpec, cache: bool | None = None) -> tuple[Any, Any]:
    """(train, val) tf.data pipelines: parallel decode, uint8 cache, seeded per-epoch shuffle,
    batch, augmentation on train only, prefetch. Pixels stay raw 0..255 floats: the model
    rescales them itself."""
    root = Path(spec.dataset_dir)
    common = {
        "label_mode": spec.label_mode,
        "class_names": spec.class_names,
        "image_size": tuple(spec.image_size),
        "batch_size": None,
        "seed": spec.seed,
    }
    load = keras.utils.image_dataset_from_directory
    if (root / "val").is_dir():
        train = load(root / "train", shuffle=True, **common)
        val = load(root / "val", shuffle=False, **common)
    else:
        train, val = load(
            root / "train",
            shuffle=True,
            validation_split=spec.validation_split,
            subset="both",
            **common,
        )
    n_train, n_val = len(train.file_paths), len(val.file_paths)
    pixels = (n_train + n_val) * spec.image_size[0] * spec.image_size[1] * 3
    cache = pixels <= CACHE_LIMIT_BYTES if cache is None else cache
    augment = build_augmentation(spec.augmentation, spec.seed, FUSED_AUGMENTATION)
    return (
        _pipeline(train, spec, cache, augment, shuffle=n_train),
        _pipeline(val, spec, cache, None, shuffle=0),
    )


def _pipeline(ds, spec: TrainSpec, cache: bool, augment, shuffle: int):
    autotune = tf.data.AUTOTUNE
    # uint8 in the cache: a quarter of the memory of the float32 the loader yields.
    ds = ds.map(
        lambda x, y: (tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8), y), autotune
    )
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(shuffle, 10_000), seed=spec.seed, reshuffle_each_iteration=True)
    ds = ds.batch(spec.batch_size)
    if augment is None:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), autotune)
    else:
        ds = ds.map(lambda x, y: (augment(tf.cast(x, tf.float32), training=True), y), autotune)
    return ds.prefetch(autotune)


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


@contextlib.contextmanager
def precision(mixed: bool) -> Iterator[None]:
    """Build and train under mixed_bfloat16 when asked; always restore the global policy."""
    before = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def _callbacks(spec: TrainSpec, recorder: HistoryRecorder, backup_dir: Path) -> list:
    # Order matters for a crash between callbacks: rows, then best.keras, then the backup,
    # so a resumed epoch never has a backup without its history rows.
    checkpoint = keras.callbacks.ModelCheckpoint(
        spec.best_path, monitor="val_accuracy", mode="max", save_best_only=True
    )
    recorder.attach(checkpoint)
    callbacks = [
        recorder,
        checkpoint,
        # Kept after training (delete_checkpoint=False): a later resume_run with more epochs
        # continues from the last one instead of starting over.
        keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False),
    ]
    if spec.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=spec.early_stopping_patience
            )
        )
    return callbacks + list(EXTRA_CALLBACKS)


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
        callbacks = _callbacks(spec, recorder, spec.model_dir / "backup" / "head")
        fit = {"validation_data": val_ds, "verbose": 0, "shuffle": False}
        model.fit(train_ds, epochs=spec.epochs, callbacks=callbacks + list(extra_callbacks), **fit)
        if spec.fine_tune_layers and spec.fine_tune_epochs:
            done = max((r["epoch"] for r in recorder.epoch_rows), default=0)
            count = unfreeze_top(model, spec.fine_tune_layers)
            lr = (spec.learning_rate or model.optimizer.learning_rate.numpy()) / 10
            compile_model(model, spec.model, len(spec.class_names), spec.optimizer, float(lr))
            logger().info("fine-tuning %d backbone layers at learning rate %.2g", count, lr)
            model._initial_epoch = None  # set by the first BackupAndRestore; must not leak
            callbacks = _callbacks(spec, recorder, spec.model_dir / "backup" / "fine_tune")
            callbacks += list(extra_callbacks)
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


def evaluate_model(spec: TrainSpec, model_path: str | Path) -> dict[str, float]:
    """Load a saved model and evaluate it on the validation split (no augmentation)."""
    with precision(spec.mixed_precision):
        model = keras.saving.load_model(model_path)
        _, val_ds = make_datasets(spec)
        loss, accuracy = model.evaluate(val_ds, verbose=0)
    return {"val_loss": float(loss), "val_accuracy": float(accuracy)}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

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
