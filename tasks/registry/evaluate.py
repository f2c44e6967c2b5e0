"""The frozen evaluation set and a trained model's scores on it (accuracy, loss, per class).

Scoring reuses the predict engines: `resolve_model` reads the model card, `get_predictor` loads
the model once per process, `image_batches` decodes exactly as prediction does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from storage.errors import ConfigError
from tasks.predict.engines.cache import get_predictor
from tasks.predict.images import OK, image_batches
from tasks.predict.inputs import images_in
from tasks.predict.spec import resolve_model
from tasks.runtime import logger
from tasks.weights import file_digest

SPLITS = ("test", "val")  # the frozen test split first; val is the weaker fallback
EPSILON = 1e-7  # Keras's clip in cross-entropy


@dataclass(frozen=True)
class EvalSet:
    """The images both models are scored on, with their true classes."""

    dataset_dir: str
    split: str
    paths: tuple[str, ...]
    classes: tuple[str, ...]  # the true class of each path
    fingerprint: str

    @property
    def class_names(self) -> list[str]:
        return sorted(set(self.classes))


class Scores(BaseModel):
    """One model on one evaluation set."""

    accuracy: float
    loss: float | None  # None when no image could be read
    class_accuracy: dict[str, float]
    images: int  # scored (readable) images
    unreadable: int


def eval_set(dataset_dir: str | Path) -> EvalSet:
    """`test/` of the dataset, else `val/` (a warning: the model picked its best epoch on it)."""
    root = Path(dataset_dir).expanduser().resolve()
    for split in SPLITS:
        folder = root / split
        pairs = [
            (path, c.name)
            for c in (sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else [])
            for path in images_in(c)
        ]
        if pairs:
            if split != SPLITS[0]:
                logger().warning(
                    "%s has no test/ images: evaluating on val/, which training chose its best"
                    " epoch on (a weaker comparison); prepare with test_fraction > 0",
                    root,
                )
            paths, classes = zip(*pairs, strict=True)
            return EvalSet(str(root), split, paths, classes, fingerprint(root, paths))
    raise ConfigError(f"{root} has no test/ or val/ images to evaluate models on")


def fingerprint(root: Path, paths: tuple[str, ...]) -> str:
    """sha256 over each image's path under the dataset and its content: equal fingerprints
    mean the very same evaluation images."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{Path(path).relative_to(root).as_posix()}\t".encode())
        digest.update(f"{file_digest(path)}\n".encode())
    return digest.hexdigest()


def class_probabilities(probs: np.ndarray, binary: bool) -> np.ndarray:
    """(n, classes) probabilities; a binary model's one sigmoid output becomes (1 - p, p)."""
    if binary:
        p = probs.reshape(-1)
        return np.stack([1.0 - p, p], axis=1)
    return probs


def summarize(
    names: list[str], truth: np.ndarray, probs: np.ndarray, binary: bool, unreadable: int
) -> Scores:
    """Accuracy, mean cross-entropy and per-class accuracy of readable images (pure)."""
    full = class_probabilities(probs, binary)
    predicted = (full[:, 1] >= 0.5).astype(int) if binary else full.argmax(axis=1)
    correct = predicted == truth
    picked = full[np.arange(len(truth)), truth] if len(truth) else np.zeros(0)
    losses = -np.log(np.clip(picked, EPSILON, 1.0))
    per_class = {
        name: float(correct[truth == i].mean())
        for i, name in enumerate(names)
        if (truth == i).any()
    }
    return Scores(
        accuracy=float(correct.mean()) if len(truth) else 0.0,
        loss=float(losses.mean()) if len(truth) else None,
        class_accuracy=per_class,
        images=len(truth),
        unreadable=unreadable,
    )


def evaluate_run_name() -> str:
    """`evaluate-<run id>`: models live in models/<run id>/best.keras, and a whole path made
    the task's name unreadable in the UI."""
    from prefect.runtime import task_run

    path = Path(str(task_run.parameters.get("model_path", "model")))
    return f"evaluate-{path.parent.name or path.stem}"


@task(name="evaluate-model", task_run_name=evaluate_run_name, cache_policy=NO_CACHE)
def evaluate_model(model_path: str, evalset: EvalSet, batch_size: int = 32) -> Scores:
    """Score a trained model on the evaluation set; unreadable images are left out (both
    models see the same ones)."""
    spec = resolve_model(model_path)
    names = list(spec.labels.names)
    unknown = sorted(set(evalset.class_names) - set(names))
    if unknown:
        raise ConfigError(f"{evalset.split}/ has classes {unknown} that {model_path} lacks")
    predict = get_predictor(spec)
    index = {name: i for i, name in enumerate(names)}
    truth, probs, unreadable, start = [], [], 0, 0
    paths = list(evalset.paths)
    for pixels, status, _ in image_batches(paths, spec.image_size, batch_size, spec.preprocessing):
        ok = status.numpy() == OK
        out = predict(pixels)
        n = len(ok)
        classes = evalset.classes[start : start + n]
        truth += [index[c] for c, good in zip(classes, ok, strict=True) if good]
        probs.append(out[ok])
        unreadable += int((~ok).sum())
        start += n
    stacked = np.concatenate(probs) if probs else np.zeros((0, 1 if spec.binary else len(names)))
    scores = summarize(names, np.array(truth, dtype=int), stacked, spec.binary, unreadable)
    logger().info(
        "%s on %s/ (%d images): accuracy %.4f, loss %s",
        model_path, evalset.split, scores.images, scores.accuracy, scores.loss,
    )  # fmt: skip
    return scores
