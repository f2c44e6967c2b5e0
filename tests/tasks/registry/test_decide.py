"""The promotion rule and the scoring arithmetic (pure), and the models table's closed
decision vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from storage.errors import SchemaError
from storage.rows import to_arrow
from tasks.registry.decide import Rule, decide
from tasks.registry.evaluate import Scores, summarize


def scores(accuracy: float, **per_class: float) -> Scores:
    return Scores(accuracy=accuracy, loss=0.5, class_accuracy=per_class, images=100, unreadable=0)


RULE = Rule(min_improvement=0.005, max_class_drop=5.0)


@pytest.mark.parametrize(
    ("challenger", "champion", "decision", "words"),
    [
        (scores(0.905, a=0.9, b=0.91), scores(0.90, a=0.9, b=0.9), "promoted", "gain +0.0050"),
        (scores(0.904, a=0.9, b=0.91), scores(0.90, a=0.9, b=0.9), "kept", "below min_improv"),
        (scores(0.95, a=0.84, b=1.0), scores(0.90, a=0.9, b=0.9), "kept", "'a' drops 6.0"),
        (scores(0.95, a=0.85, b=1.0), scores(0.90, a=0.9, b=0.9), "promoted", "'a' -5.0 points"),
        (scores(0.80), scores(0.90), "kept", "gain -0.1000"),
    ],
)
def test_promotion_needs_the_gain_and_no_large_class_drop(challenger, champion, decision, words):
    verdict = decide(challenger, champion, RULE, has_champion=True)
    assert verdict.decision == decision and words in verdict.reason


def test_first_forced_incompatible_and_same_model():
    weak, strong = scores(0.5), scores(0.99)
    assert decide(weak, None, RULE, has_champion=False).decision == "first"
    forced = decide(weak, strong, RULE, has_champion=True, force_reason="hotfix", compatible=False)
    assert (forced.decision, forced.reason) == ("forced", "promoted by hand: hotfix")
    refused = decide(strong, None, RULE, has_champion=True, compatible=False)
    assert refused.decision == "incompatible" and not refused.changes_champion
    assert decide(strong, strong, RULE, has_champion=True, same_model=True).decision == "kept"
    broken = decide(weak, None, RULE, has_champion=True, champion_error="no such file")
    assert broken.decision == "promoted" and "no such file" in broken.reason


def test_summarize_scores_binary_and_categorical_outputs():
    # Binary: one sigmoid output; class 1 at p >= 0.5.
    truth = np.array([0, 0, 1, 1])
    got = summarize(["cat", "dog"], truth, np.array([[0.1], [0.7], [0.5], [0.9]]), True, 1)
    assert got.accuracy == 0.75 and got.class_accuracy == {"cat": 0.5, "dog": 1.0}
    expected = -np.mean(np.log([0.9, 0.3, 0.5, 0.9]))
    assert got.loss == pytest.approx(expected) and (got.images, got.unreadable) == (4, 1)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    got = summarize(["a", "b", "c"], np.array([0, 1]), probs, False, 0)
    assert got.accuracy == 0.5 and got.class_accuracy == {"a": 1.0, "b": 0.0}  # no c images
    empty = summarize(["a", "b"], np.array([], dtype=int), np.zeros((0, 2)), False, 3)
    assert (empty.images, empty.loss) == (0, None)
    assert decide(empty, scores(0.5), RULE, has_champion=True).decision == "kept"


def test_the_models_table_refuses_an_unknown_decision():
    from datetime import UTC, datetime

    row = {
        "run_id": "r", "model": "small_cnn", "dataset": "d", "model_path": "/m/best.keras",
        "sha256": None, "class_names": ["a", "b"], "image_size": [32, 32], "best_epoch": 1,
        "best_val_accuracy": 0.9, "best_val_loss": 0.1, "eval_split": "test", "eval_images": 9,
        "eval_fingerprint": "f", "eval_accuracy": 0.9, "eval_loss": 0.2,
        "eval_class_accuracy": {"a": 1.0}, "champion_run": None, "champion_accuracy": None,
        "champion_loss": None, "champion_class_accuracy": None, "decision": "first",
        "reason": "why", "decided_at": datetime.now(UTC),
    }  # fmt: skip
    assert to_arrow("models", [row]).num_rows == 1
    with pytest.raises(SchemaError, match=r"models.decision: unknown value\(s\) \['crowned'\]"):
        to_arrow("models", [row | {"decision": "crowned"}])
