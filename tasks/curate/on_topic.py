"""The on-topic check: what an ImageNet classifier sees in each image, against the classes the
user expects for its label (pure, given the probabilities)."""

from __future__ import annotations

import json

import numpy as np

from tasks.predict.labels import Labels, check_targets, ranking


def expected_classes(labels: Labels, expect: dict[str, list[str]]) -> dict[str, set[int]]:
    """label -> ImageNet class indices it accepts (names or WordNet ids); ConfigError for a
    name that is no class, before any image is scored."""
    return {label: set(check_targets(labels, names)) for label, names in expect.items()}


def verdicts(
    probs: np.ndarray, image_labels: list[str], accepted: dict[str, set[int]], labels: Labels,
    top_k: int,
) -> list[dict]:  # fmt: skip
    """One verdict per image: `ok` when its top-k classes hold one its label accepts, else
    `off_topic`; the evidence is the top-k with probabilities, the top-1 kept as suggestion."""
    order = ranking(probs)[:, :top_k]
    out = []
    for i, label in enumerate(image_labels):
        top = [int(c) for c in order[i]]
        hit = bool(accepted[label] & set(top))
        evidence = [{"class": labels.names[c], "p": round(float(probs[i, c]), 4)} for c in top]
        out.append(
            {
                "verdict": "ok" if hit else "off_topic",
                "evidence": json.dumps(evidence),
                "suggested_label": labels.names[top[0]],
                "probability": float(probs[i, top[0]]),
            }
        )
    return out
