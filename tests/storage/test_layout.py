from pathlib import Path

import pytest

from storage.errors import ConfigError, PixelpipeError
from storage.layout import Layout, new_run_id, resolve_data_dir, safe_name


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("PIXELPIPE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir() == tmp_path / "data"
    monkeypatch.setenv("PIXELPIPE_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_paths_follow_the_design_tree(tmp_path):
    layout = Layout.at(tmp_path)
    assert layout.raw("banana") == tmp_path / "raw" / "banana"
    assert layout.dataset("fruit") == tmp_path / "datasets" / "fruit"
    assert layout.model_dir("r1") == tmp_path / "models" / "r1"
    assert layout.report_dir("r1") == tmp_path / "reports" / "r1"
    assert layout.table_file("predictions", "r1", "2026-11-28") == Path(
        tmp_path, "warehouse", "predictions", "run_date=2026-11-28", "r1.parquet"
    )
    assert (
        layout.table_file("predictions", "r1", "2026-11-28", part="0003").name == "r1-0003.parquet"
    )


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "x" * 200, "a\\b", "..", "é"])
def test_unsafe_names_are_refused(bad):
    with pytest.raises(ConfigError, match="not a valid folder name") as info:
        safe_name(bad, "label")
    assert isinstance(info.value, PixelpipeError) and isinstance(info.value, ValueError)


def test_run_ids_are_unique_and_safe():
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(safe_name(i) == i for i in ids)
