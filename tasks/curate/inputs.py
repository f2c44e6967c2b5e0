"""What curate_images reads, checked before any model loads: the <class>/<image> folder, the
labels asked for, and the on-topic classifier. Free of TensorFlow and Prefect, so the command
line runs these checks before it imports either; nothing is hashed until they pass."""

from __future__ import annotations

from pathlib import Path

from storage.errors import ConfigError
from storage.files import image_files
from tasks.predict.spec import ModelSpec, resolve_model
from tasks.weights import file_digest

Image = tuple[str, str, str]  # (path, label, sha256): how the checks and the rows name an image


def find_images(root: Path, labels: list[str] | None) -> list[tuple[str, str]]:
    """(path, label) of every image in `root/<label>/`, labels sorted; ConfigError when the
    folder is missing, a named label has no folder, or nothing is found."""
    if not root.is_dir():
        raise ConfigError(f"source folder {root} does not exist (give a <class>/<image> folder)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if labels:
        missing = sorted(set(labels) - {p.name for p in folders})
        if missing:
            raise ConfigError(f"no folder for label(s) {missing} in {root}")
        folders = [p for p in folders if p.name in labels]
    found = [(path.as_posix(), folder.name) for folder in folders for path in image_files(folder)]
    if not found:
        raise ConfigError(f"no images in {root}/<label>/ to curate")
    return found


def with_hashes(found: list[tuple[str, str]]) -> list[Image]:
    """Each image with its content hash, which keys its cached features and its rows."""
    return [(path, label, file_digest(path)) for path, label in found]


def list_images(root: Path, labels: list[str] | None) -> list[Image]:
    """(path, label, sha256) of every image in `root/<label>/` (find_images' checks first)."""
    return with_hashes(find_images(root, labels))


def imagenet_classifier(
    model: str, weights: str | None, expect: dict[str, list[str]], labels: set[str]
) -> ModelSpec:
    """The on-topic check's classifier, once `expect` names only labels that have images; its
    weights file must exist and it must have ImageNet's 1,000 classes."""
    unknown = sorted(set(expect) - labels)
    if unknown:
        raise ConfigError(
            f"--expect names label(s) {unknown} with no images (labels: {sorted(labels)})"
        )
    spec = resolve_model(model, weights, weights_option="--classifier-weights")
    if len(spec.labels) != 1000:
        raise ConfigError(
            f"the on-topic check needs an ImageNet classifier (1,000 classes); {spec.identity}"
            f" has {len(spec.labels)}"
        )
    return spec
