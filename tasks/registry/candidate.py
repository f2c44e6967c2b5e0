"""A trained model as the registry knows it (a run's best.keras and its card), checked before
any model is loaded: free of TensorFlow and Prefect, so the command line checks a run id fast."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage.errors import ConfigError
from storage.layout import Layout, safe_name
from storage.model_card import ModelCard, model_file
from tasks.weights import file_digest


@dataclass(frozen=True)
class Candidate:
    """A trained model as the registry knows it: models/<run>/best.keras and its card."""

    run_id: str
    dataset: str
    model_path: str
    sha256: str
    card: ModelCard


def candidate(run_id: str, data_dir: str | None) -> Candidate:
    """The trained model of a run; ConfigError saying what is missing otherwise."""
    model_dir = Layout.at(data_dir).model_dir(run_id)
    path = model_file(model_dir)
    if not path.is_file():
        raise ConfigError(f"run {run_id!r} has no trained model: {path} does not exist")
    card = ModelCard.read(model_dir)
    if card.status != "trained" or not card.dataset_dir:
        raise ConfigError(
            f"run {run_id!r} has not finished training (its model card has status"
            f" {card.status!r} and dataset_dir {card.dataset_dir!r})"
        )
    dataset = safe_name(Path(card.dataset_dir).name, "dataset name")
    return Candidate(run_id, dataset, str(path), file_digest(path), card)
