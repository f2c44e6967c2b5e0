"""What a training run is, before TensorFlow loads: the dataset folder checked and described,
and the TrainSpec a task receives."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from storage.errors import ConfigError
from storage.files import TF_IMAGE_EXTENSIONS as TF_EXTENSIONS
from storage.images import open_image
from storage.layout import Layout
from storage.model_card import model_file
from tasks.train.settings import TrainSettings


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


class TrainSpec(TrainSettings):
    """One training run as a task receives it: the settings with the dataset resolved."""

    run_id: str
    data_dir: str
    dataset_dir: str
    class_names: list[str]
    image_size: tuple[int, int]  # (height, width): the dataset's own size unless set
    weights: str | None = None  # resolved: a file, "imagenet" found in the cache, or None

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
    first = files[classes[0]][0]
    try:  # the header only, through the gate: a folder made by hand may hold anything
        with open_image(first) as image:
            size = (image.height, image.width)
    except Exception as e:
        raise ConfigError(f"{first} cannot be read as an image ({e}): remove or replace it") from e
    listing = sorted(str(f.relative_to(root)) for f in root.glob("*/*/*") if f.is_file())
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()
    counts = {c: len(f) for c, f in files.items()}
    return DatasetInfo(str(root), classes, counts, val_counts, size, digest, has_val)
