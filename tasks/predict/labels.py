"""Offline ImageNet labels, softmax, top-k decoding and target matching (pure, NumPy only)."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from storage.errors import ConfigError

# The exact file Keras's decode_predictions downloads (md5 c2c37ea517e94d9795004a39431a14cb),
# shipped as package data so decoding never needs the network.
CLASS_INDEX_FILE = "imagenet_class_index.json"


@dataclass(frozen=True)
class Labels:
    """A model's classes in output order: names, and WordNet ids where the model has them."""

    names: tuple[str, ...]
    wnids: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.names)


@cache
def imagenet_labels() -> Labels:
    """The 1,000 ImageNet classes in Keras's order (index 954 is `banana`)."""
    index = json.loads((Path(__file__).parent / "data" / CLASS_INDEX_FILE).read_text("utf-8"))
    pairs = [index[str(i)] for i in range(len(index))]
    return Labels(tuple(name for _, name in pairs), tuple(wnid for wnid, _ in pairs))


def _norm(name: str) -> str:
    # "Granny Smith", "granny_smith" and "Granny_Smith" all name the same class.
    return name.strip().casefold().replace(" ", "_").replace("-", "_")


def target_indices(labels: Labels, targets: list[str]) -> dict[str, list[int]]:
    """Class indices each target names, by class name or WordNet id (case-insensitive).

    A name may match several classes (ImageNet has two `crane`s); an unknown target maps to [].
    """
    by_key: dict[str, list[int]] = {}
    for i, name in enumerate(labels.names):
        by_key.setdefault(_norm(name), []).append(i)
    for i, wnid in enumerate(labels.wnids or ()):
        by_key.setdefault(_norm(wnid), []).append(i)
    return {t: sorted(set(by_key.get(_norm(t), []))) for t in targets}


def check_targets(labels: Labels, targets: list[str]) -> list[int]:
    """All class indices the targets name; raises ConfigError for a target naming no class."""
    found = target_indices(labels, targets)
    unknown = [t for t, idx in found.items() if not idx]
    if unknown:
        hints = difflib.get_close_matches(unknown[0], labels.names, n=3)
        hint = f"; did you mean {', '.join(hints)}?" if hints else ""
        raise ConfigError(
            f"target {unknown[0]!r} is not a class of this model{hint} (targets are class"
            " names or WordNet ids like n07753592; see --targets)"
        )
    return sorted({i for idx in found.values() for i in idx})


def ranking(probs: np.ndarray) -> np.ndarray:
    """Class indices of each row from most to least probable; ties go to the lower index."""
    # A stable sort on -p keeps decode_predictions' order for equal probabilities.
    return np.argsort(-probs, axis=-1, kind="stable")


def binary_ranking(p1: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """A sigmoid output turned into (two-class probabilities, ranking) with a threshold.

    Class 1 ranks first when p >= threshold (the classic "digitize the output" step), also
    when the threshold is not 0.5; the probabilities stay [1 - p, p].
    """
    p1 = p1.reshape(-1).astype(np.float32)
    probs = np.stack([1.0 - p1, p1], axis=-1)
    first = (p1 >= threshold).astype(np.int64)
    return probs, np.stack([first, 1 - first], axis=-1)


def target_scores(
    probs: np.ndarray, order: np.ndarray, target_idx: list[int], within: int
) -> tuple[np.ndarray, np.ndarray]:
    """(which of each row's `within` best classes are targets, the targets' summed probability).

    The mask is (n, within): True where the class at that rank is a target. A class with
    probability 0 is never a hit, even when ties put it high (quantized outputs).
    """
    best = order[:, :within]
    if not target_idx:
        return np.zeros(best.shape, dtype=bool), np.zeros(len(probs), dtype=np.float32)
    positive = np.take_along_axis(probs, best, axis=-1) > 0
    mask = np.isin(best, target_idx) & positive
    return mask, probs[:, target_idx].sum(axis=-1).astype(np.float32)


def softmax_rows(y: np.ndarray) -> np.ndarray:
    """Probabilities from logits, row by row (the engines that return logits apply it)."""
    e = np.exp(y - y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
