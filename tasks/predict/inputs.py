"""Which images a prediction run reads: files, folders, a scrape run or a dataset split.
Free of TensorFlow, so the command line checks them before it loads a model."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from storage.errors import ConfigError
from storage.files import is_image_name
from storage.layout import resolve_data_dir
from storage.parquet import read_table


def _posix(path: Path) -> str:
    return path.expanduser().resolve().as_posix()


def images_in(folder: Path) -> list[str]:
    """Image files under a folder, recursively, in a stable order (hidden files and folders
    skipped; a linked folder is not entered, so a link loop cannot recurse). Listed as plain
    strings: a Path per file (100,000 in a big dataset) would cost the flow ~0.5 KB an image
    in objects and interned names, long after they are gone."""
    found: list[str] = []
    folders = [_posix(folder)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif is_image_name(entry.name) and entry.is_file():
                    found.append(entry.path)
    found.sort()
    return found


def from_paths(inputs: Iterable[str]) -> list[str]:
    """Files as given and folders searched; a path that does not exist is a ConfigError."""
    images: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            images += images_in(path)
        elif path.exists():
            images.append(_posix(path))
        else:
            raise ConfigError(f"input {item!r} does not exist (give image files or folders)")
    return images


def from_scrape_run(run_id: str, data_dir: str | None) -> list[str]:
    """The files of a scrape run's `ok` rows (relative paths are under the data root)."""
    rows = read_table("scrape_manifest", data_dir=data_dir, run_id=run_id)
    if rows.empty:
        raise ConfigError(f"scrape run {run_id!r} has no scrape_manifest rows under {data_dir}")
    ok = rows[(rows["status"] == "ok") & rows["path"].notna()]
    root = resolve_data_dir(data_dir)
    return [_posix(root / p) for p in ok["path"]]  # an absolute p replaces the root


def from_dataset(dataset_dir: str, split: str) -> list[str]:
    """The images of dataset_dir/<split>/<class>/."""
    folder = Path(dataset_dir).expanduser() / split
    if not folder.is_dir():
        raise ConfigError(f"{folder} does not exist: is {dataset_dir} a prepared dataset?")
    return images_in(folder)


def collect_images(
    inputs: list[str],
    *,
    scrape_run: str | None = None,
    dataset_dir: str | None = None,
    split: str = "val",
    data_dir: str | None = None,
) -> list[str]:
    """Absolute POSIX paths of every image to predict, each once, in input order."""
    if scrape_run:
        images, where = from_scrape_run(scrape_run, data_dir), f"scrape run {scrape_run}"
    elif dataset_dir:
        images, where = from_dataset(dataset_dir, split), f"{dataset_dir}/{split}"
    elif inputs:
        images, where = from_paths(inputs), ", ".join(inputs)
    else:
        raise ConfigError("nothing to predict: give inputs, scrape_run or dataset_dir")
    images = list(dict.fromkeys(images))
    if not images:
        raise ConfigError(f"no images found in {where}")
    return images
