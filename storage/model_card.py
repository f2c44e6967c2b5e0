"""The model card: the JSON file beside every trained model that says what it is, how to feed
it and how it was made. Training writes it; prediction, reports and the registry read it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from storage import files
from storage.errors import ConfigError

MODEL_FILE = "best.keras"  # the best epoch's model, in models/<run>/
CARD_FILE = "model_card.json"  # beside it


class ModelCard(BaseModel):
    """What predict and report need, and what reproduces the run. Unknown keys are kept, so a
    card written by a newer pixelpipe still reads."""

    model_config = ConfigDict(extra="allow")

    run_id: str | None = None
    model: str | None = None
    class_names: list[str]
    image_size: tuple[int, int] = (224, 224)  # (height, width)
    label_mode: Literal["binary", "categorical", "int"] = "categorical"
    num_classes: int | None = None
    status: Literal["training", "trained"] = "trained"
    # How training resized its inputs. The defaults are what cards without these fields meant:
    # image_dataset_from_directory's bilinear stretch, raw pixels rescaled inside the model.
    interpolation: str = "bilinear"
    resize_mode: Literal["stretch", "crop", "pad"] = "stretch"
    crop_fraction: float = 1.0
    scaling: str = "raw 0-255 (the model rescales)"
    input: str | None = None
    output: str | None = None
    weights: str | None = None
    model_path: str | None = None
    dataset_dir: str | None = None
    dataset_manifest_sha256: str | None = None
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    best_val_loss: float | None = None
    epochs_run: int | None = None
    evaluated_val_accuracy: float | None = None
    evaluated_val_loss: float | None = None
    history_path: str | None = None
    batch_history_path: str | None = None
    train_counts: dict[str, int] | None = None
    val_counts: dict[str, int] | None = None
    validation: str | None = None
    params: dict[str, Any] | None = None
    versions: dict[str, str] | None = None
    exports: dict[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def binary(self) -> bool:
        return self.label_mode == "binary"

    def write(self, model_dir: str | os.PathLike[str]) -> Path:
        """Write `model_dir/model_card.json` atomically."""
        text = self.model_dump_json(indent=2, exclude_none=False) + "\n"
        return files.write_text(Path(model_dir) / CARD_FILE, text)

    @classmethod
    def read(cls, model: str | os.PathLike[str]) -> ModelCard:
        """The card of a model folder, or of the model file inside it; ConfigError saying
        what is wrong when it is missing or not a model card."""
        path = Path(model)
        folder = path if path.is_dir() else path.parent
        card_path = folder / CARD_FILE
        try:
            return cls.model_validate_json(card_path.read_bytes())
        except FileNotFoundError:
            raise ConfigError(
                f"{folder} has no {CARD_FILE}: the model card gives class names and image size"
                " (train_classifier writes it beside the model)"
            ) from None
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'card'}: {err['msg']}" for err in e.errors()
            )
            raise ConfigError(f"{card_path} is not a valid model card: {problems}") from None


def model_file(model_dir: str | os.PathLike[str]) -> Path:
    return Path(model_dir) / MODEL_FILE


def card_file(model_dir: str | os.PathLike[str]) -> Path:
    return Path(model_dir) / CARD_FILE
