"""The report's Model decision section, from `models` rows written and read back for real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.parquet import read_table, write_table
from tasks.report.decision import decision_section
from tasks.report.document import Facts, Table, Text

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def row(**changes) -> dict:
    base = {
        "run_id": "night-2", "model": "small_cnn", "dataset": "toy",
        "model_path": "/data/models/night-2/best.keras", "sha256": "ab" * 32,
        "class_names": ["dark", "light"], "image_size": [32, 32], "best_epoch": 1,
        "best_val_accuracy": 0.5, "best_val_loss": 0.7, "eval_split": "test", "eval_images": 20,
        "eval_fingerprint": "f" * 64, "eval_accuracy": 0.55, "eval_loss": 0.69,
        "eval_class_accuracy": {"dark": 1.0, "light": 0.1}, "champion_run": "night-1",
        "champion_accuracy": 0.95, "champion_loss": 0.2,
        "champion_class_accuracy": {"dark": 0.9, "light": 1.0}, "decision": "kept",
        "reason": "accuracy 0.5500 vs champion 0.9500", "decided_at": NOW,
    }  # fmt: skip
    return base | changes


def test_the_latest_decision_side_by_side_per_class(data_dir):
    write_table("models", [row()], run_id="night-2", part="a")
    later = row(decision="rolled_back", reason="rolled back from night-3", eval_split=None,
                eval_images=None, eval_accuracy=None, eval_loss=None, eval_class_accuracy=None,
                champion_run="night-3", champion_accuracy=None, champion_loss=None,
                champion_class_accuracy=None, decided_at=NOW + timedelta(days=1))  # fmt: skip
    models = read_table("models", run_id="night-2")
    section = decision_section(models)
    facts = dict(section.facts)
    assert facts["decision"] == "kept" and facts["compared with"] == "night-1"
    assert facts["evaluation split"] == "test/ (20 images)"
    (table,) = [b for b in section.blocks if isinstance(b, Table)]
    assert table.columns == ["", "this run (night-2)", "champion (night-1)"]
    assert table.rows == [
        ["accuracy", "55.0%", "95.0%"],
        ["loss", "0.6900", "0.2000"],
        ["class dark", "100.0%", "90.0%"],
        ["class light", "10.0%", "100.0%"],
    ]
    assert [b.text for b in section.blocks if isinstance(b, Text)] == [
        "Why: accuracy 0.5500 vs champion 0.9500"
    ]
    write_table("models", [later], run_id="night-2", part="b")
    section = decision_section(read_table("models", run_id="night-2"))
    facts = dict(next(b for b in section.blocks if isinstance(b, Facts)).items)
    assert (facts["decision"], facts["evaluation split"]) == ("rolled_back", "–")
    assert decision_section(read_table("models", run_id="nobody")) is None
