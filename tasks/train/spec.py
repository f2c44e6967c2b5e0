"""What a training run is, before TensorFlow loads: the dataset folder checked and described,
the backbone's ImageNet weights found, and the TrainSpec a task receives."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from storage.errors import ConfigError
from storage.files import TF_IMAGE_EXTENSIONS as TF_EXTENSIONS
from storage.images import open_image
from storage.layout import Layout
from storage.model_card import model_file
from tasks.keras_compat import MOBILENET_ORIGIN, RESNET50_NOTOP
from tasks.train.settings import TRANSFER_MODELS, TrainSettings
from tasks.weights import imagenet_weights, missing_weights_file


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


_ALPHA_TEXT = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}


def imagenet_weights_file(
    model: str, alpha: float = 0.25, image_size: int = 224, option: str = "--weights"
) -> tuple:
    """(file name, URL, md5 or None) of the no-top ImageNet weights Keras would fetch."""
    if model == "resnet50_transfer":
        notop = RESNET50_NOTOP
        return notop.file, notop.origin + notop.file, notop.md5
    if alpha not in _ALPHA_TEXT:
        raise ConfigError(
            f"MobileNet ImageNet weights exist for alpha 0.25, 0.5, 0.75 or 1.0, not {alpha}:"
            f" change --alpha or use {option} none"
        )
    rows = image_size if image_size in (128, 160, 192, 224) else 224
    name = f"mobilenet_{_ALPHA_TEXT[alpha]}_{rows}_tf_no_top.h5"
    return name, MOBILENET_ORIGIN + name, None


def resolve_weights(
    model: str,
    weights: str | None,
    alpha: float = 0.25,
    image_size: int = 224,
    option: str = "--weights",
) -> str | None:
    """What to hand the Keras application: None (random), "imagenet" (cache checked, or
    downloaded now) or an existing local file. Raises WeightsNotFoundError before training,
    naming `option` (the command's weights option) as the way to point elsewhere."""
    if model not in TRANSFER_MODELS or weights is None or weights.lower() in ("", "none"):
        return None
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise missing_weights_file(path, option)
        return str(path.resolve())
    name, url, md5 = imagenet_weights_file(model, alpha, image_size, option)
    # cached, or fetched by Keras now, or one clear error
    imagenet_weights(model, name, url, md5, option)
    return "imagenet"
