"""curate_images' tasks: run each check over all images in batches, and return `curation` rows
(one per image and check); the images come from tasks.curate.inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.curate import label_issues, on_topic
from tasks.curate.features import FeatureSpec, cached_features
from tasks.predict.engines.cache import get_predictor
from tasks.predict.images import OK, image_batches
from tasks.predict.spec import ModelSpec
from tasks.runtime import Progress, logger


def _row(run_id: str, image: tuple[str, str, str], check: str, model: str, **fields) -> dict:
    path, label, sha = image
    base = {"run_id": run_id, "path": path, "sha256": sha, "label": label, "check": check}
    base |= {"evidence": None, "suggested_label": None, "probability": None}
    return base | {"model": model, "checked_at": datetime.now(UTC)} | fields


@task(name="check-on-topic", cache_policy=NO_CACHE)
def check_on_topic(
    images: list[tuple[str, str, str]], spec: ModelSpec, expect: dict[str, list[str]],
    top_k: int, batch_size: int, run_id: str,
) -> list[dict]:  # fmt: skip
    """Score every image with the ImageNet classifier; `off_topic` when its top-k holds none of
    the classes its label expects. Labels without expectations are not checked."""
    accepted = on_topic.expected_classes(spec.labels, expect)
    todo = [image for image in images if image[1] in accepted]
    predict = get_predictor(spec)
    progress = Progress(len(todo), "on-topic check")
    rows, start = [], 0
    batches = image_batches(
        [p for p, _, _ in todo], spec.image_size, batch_size, spec.preprocessing
    )
    for pixels, status, error in batches:
        chunk = todo[start : start + int(status.shape[0])]
        probs = predict(pixels)
        ok = status.numpy() == OK
        found = on_topic.verdicts(
            probs, [label for _, label, _ in chunk], accepted, spec.labels, top_k
        )
        for image, is_ok, verdict, err in zip(chunk, ok, found, error.numpy(), strict=True):
            fields = verdict if is_ok else {"verdict": "error", "evidence": err.decode()}
            rows.append(_row(run_id, image, "on_topic", spec.identity, **fields))
        start += len(chunk)
        progress.advance(len(chunk))
    logger().info("on-topic: %d of %d images off topic", _count(rows, "off_topic"), len(rows))
    return rows


@task(name="check-label-issues", cache_policy=NO_CACHE)
def check_label_issues(
    images: list[tuple[str, str, str]], spec: FeatureSpec, cache_dir: str, folds: int,
    seed: int, batch_size: int, run_id: str,
) -> list[dict]:  # fmt: skip
    """Out-of-fold probabilities on cached backbone features, then confident learning:
    `suspect_label` where the image's label is likely wrong."""
    features, computed = cached_features(
        [p for p, _, _ in images], [s for _, _, s in images], spec, Path(cache_dir), batch_size
    )
    logger().info("features: %d computed, %d from the cache", computed, len(images) - computed)
    readable = [i for i, f in enumerate(features) if f is not None]
    class_names = sorted({images[i][1] for i in readable})
    given = np.array([class_names.index(images[i][1]) for i in readable])
    x = np.stack([features[i] for i in readable]) if readable else np.zeros((0, 1))
    probs = label_issues.out_of_fold_probabilities(x, given, folds, seed)
    issues = label_issues.find_issues(given, probs)
    found = dict(
        zip(readable, label_issues.verdicts(given, probs, issues, class_names), strict=True)
    )
    rows = []
    for i, image in enumerate(images):
        fields = found.get(i, {"verdict": "error", "evidence": "the image could not be decoded"})
        rows.append(_row(run_id, image, "label_issues", spec.identity, **fields))
    logger().info("label issues: %d of %d images suspect", _count(rows, "suspect_label"), len(rows))
    return rows


def _count(rows: list[dict], verdict: str) -> int:
    return sum(r["verdict"] == verdict for r in rows)
