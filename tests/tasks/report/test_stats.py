"""Pure summaries of the report's tables."""

import pandas as pd
import pytest

from tasks.report import stats as S


def test_confusion_precision_recall():
    pairs = pd.DataFrame(
        {"true": ["a", "a", "b", "b", "b"], "predicted": ["a", "b", "b", "b", "c"]}
    )
    cm = S.confusion(pairs, ["b", "a"])
    assert cm.true_labels == ["b", "a"] and cm.pred_labels == ["b", "a", "c"]
    assert cm.matrix.tolist() == [[2, 0, 1], [1, 1, 0]]
    assert cm.accuracy == pytest.approx(3 / 5)
    per = {r["label"]: r for r in cm.per_class()}
    assert per["b"]["precision"] == pytest.approx(2 / 3) and per["b"]["recall"] == pytest.approx(
        2 / 3
    )
    assert per["a"]["precision"] == 1.0 and per["a"]["recall"] == 0.5


def test_latest_epoch_record_wins_and_best_falls_back_to_lowest_val_loss():
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 2],
            "val_loss": [0.9, 0.8, 0.4],
            "is_best": [False, False, False],
            "finished_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True),
        }
    )
    epochs = S.latest_epochs(history)
    assert epochs["val_loss"].tolist() == [0.9, 0.4]
    assert int(S.best_epoch(epochs)["epoch"]) == 2


def test_spread_sample_is_deterministic_and_spread():
    items = [f"{i:02d}" for i in range(10)]
    assert S.spread_sample(list(reversed(items)), 3) == ["00", "04", "09"]
    assert S.spread_sample(items[:2], 5) == ["00", "01"]
