"""The champion pointers: `models/champions/<dataset>.json` names the model that predicts for a
dataset. Small files replaced atomically; the `models` table keeps the history behind them."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from storage import files
from storage.errors import ConfigError
from storage.layout import Layout, safe_name

MAX_PREVIOUS = 100  # champions remembered for rollback; the table keeps every one anyway
CHAMPION_PREFIX = "champion"  # `--model champion` / `--model champion:<dataset>`


class Champion(BaseModel):
    """One dataset's current champion and the champions before it (most recent last)."""

    dataset: str
    run_id: str
    model_path: str
    sha256: str
    class_names: list[str]
    decision: str
    decided_at: str
    eval_accuracy: float | None = None
    previous: list[str] = []


def read_champion(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Champion | None:
    """The dataset's champion, or None when it has none yet; ConfigError when unreadable or
    when it leads outside the data root's models/. Every reader of a pointer comes here, so
    no run, served or ad hoc, loads a model a pointer file smuggled in from elsewhere."""
    layout = Layout.at(data_dir)
    path = layout.champion_file(dataset)
    try:
        champion = Champion.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValidationError as e:
        raise ConfigError(f"{path} is not a champion pointer ({e.error_count()} problems)") from e
    return champion.model_copy(update={"model_path": _inside_models(champion, path, layout)})


def _inside_models(champion: Champion, pointer: Path, layout: Layout) -> str:
    """The pointer's model, resolved (symlinks, `..`; relative to the data root); ConfigError
    unless it lies under <data root>/models/ (its champions/ folder excluded)."""
    models = (layout.root / "models").resolve()
    target = Path(champion.model_path)
    try:
        target = (target if target.is_absolute() else layout.root / target).resolve()
    except (OSError, ValueError, RuntimeError) as e:  # a NUL byte, a symlink loop
        raise ConfigError(f"champion pointer {pointer} names an unusable model path ({e})") from e
    if not target.is_relative_to(models) or target.is_relative_to(models / "champions"):
        raise ConfigError(
            f"champion pointer {pointer} leads outside {models}"
            f" ({champion.model_path!r}): a champion must be a model trained under this data"
            " root; delete the pointer and promote a model again (pixelpipe promote --run-id RUN)"
        )
    return str(target)


def write_champion(champion: Champion, data_dir: str | os.PathLike[str] | None = None) -> Path:
    champion = champion.model_copy(update={"previous": champion.previous[-MAX_PREVIOUS:]})
    path = Layout.at(data_dir).champion_file(champion.dataset)
    return files.write_text(path, champion.model_dump_json(indent=2) + "\n")


def champion_datasets(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Datasets that have a champion, sorted (pointer files whose name is a valid dataset)."""
    folder = Layout.at(data_dir).champions_dir
    names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    return [n for n in names if _valid(n)]


def champion_model(model: str, data_dir: str | os.PathLike[str] | None = None) -> Champion | None:
    """`champion:<dataset>` (or plain `champion` when one dataset has one) -> its champion;
    None when `model` names no champion at all; ConfigError when it names one that is absent."""
    prefix, sep, dataset = model.partition(":")
    if prefix != CHAMPION_PREFIX or (sep and not dataset):
        return None
    if not sep:
        datasets = champion_datasets(data_dir)
        if len(datasets) != 1:
            found = ", ".join(datasets) or "none"
            raise ConfigError(
                f"--model champion needs exactly one dataset with a champion (found: {found});"
                " name one: --model champion:<dataset>"
            )
        dataset = datasets[0]
    champion = read_champion(safe_name(dataset, "dataset name"), data_dir)
    if champion is None:
        raise ConfigError(
            f"dataset {dataset!r} has no champion yet under {Layout.at(data_dir).root}:"
            " promote a model first (pixelpipe promote --run-id RUN)"
        )
    if not Path(champion.model_path).is_file():
        raise ConfigError(f"champion of {dataset!r} points at a missing {champion.model_path}")
    return champion


def _valid(name: str) -> bool:
    try:
        safe_name(name)
    except ConfigError:
        return False
    return True
