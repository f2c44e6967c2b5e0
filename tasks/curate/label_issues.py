"""The label-issue check: out-of-fold probabilities of a logistic regression on frozen features,
then confident learning (cleanlab's `find_label_issues`, Northcutt et al., JAIR 2021): an image
whose given label the others' model does not believe is `suspect_label`."""

from __future__ import annotations

import json

import numpy as np

from storage.errors import ConfigError

MIN_PER_CLASS = 2  # a class needs images in at least two folds to be predicted out of fold


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """(n, classes) probabilities, each row from a model that never saw that image."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(labels)
    if len(counts) < 2 or counts.min() < MIN_PER_CLASS:
        raise ConfigError(
            "label issues need at least two classes with 2+ images each; got"
            f" {dict(enumerate(counts.tolist()))}: add images or turn the check off"
        )
    k = int(min(folds, counts.min()))
    x = features.astype(np.float64)
    probs = np.zeros((len(labels), len(counts)))
    for train, held_out in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, labels):
        # Standardized features: one C suits any backbone; C=0.1 is strong regularization,
        # as a few hundred images in hundreds of dimensions need.
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        model.fit(x[train], labels[train])
        probs[np.ix_(held_out, model.classes_)] = model.predict_proba(x[held_out])
    return probs


def find_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Boolean mask of likely label errors (cleanlab, prune by noise rate)."""
    from cleanlab.filter import find_label_issues

    # n_jobs=1: cleanlab's default forks a multiprocessing pool, which can deadlock in a process
    # that runs Prefect's threads (a test hung 300 s once); one class at a time is milliseconds.
    return find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)


def verdicts(
    labels: np.ndarray, probs: np.ndarray, issues: np.ndarray, class_names: list[str]
) -> list[dict]:
    """One verdict per image: `suspect_label` with the label the model believes and its
    probability, else `ok` with the probability of the given label."""
    out = []
    for i, given in enumerate(labels):
        believed = int(probs[i].argmax())
        flagged = bool(issues[i])
        evidence = {"given": class_names[given], "p_given": round(float(probs[i, given]), 4)}
        evidence |= {
            "believed": class_names[believed],
            "p_believed": round(float(probs[i, believed]), 4),
        }
        out.append(
            {
                "verdict": "suspect_label" if flagged else "ok",
                "evidence": json.dumps(evidence),
                "suggested_label": class_names[believed] if flagged else None,
                "probability": float(probs[i, believed] if flagged else probs[i, given]),
            }
        )
    return out
