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


@pytest.mark.parametrize(
    "bad", ["../etc", "a/b", "", ".hidden", "x" * 65, "a\\b", "..", "é", "cats\n", "*", "a*"]
)
def test_unsafe_names_are_refused(bad):
    with pytest.raises(ConfigError, match="not a valid name") as info:
        safe_name(bad, "label")
    assert isinstance(info.value, PixelpipeError) and isinstance(info.value, ValueError)


def test_run_ids_are_unique_and_safe():
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(safe_name(i) == i for i in ids)


def test_the_longest_name_leaves_room_for_every_suffix(tmp_path):
    longest = "r" * 64
    assert safe_name(longest) == longest
    part = Layout.at(tmp_path).table_file("predictions", longest, "2026-11-28", part="x" * 64)
    hidden_temp = f".{part.name}.{'0' * 32}.tmp"  # storage.files' temporary name
    assert len(hidden_temp) < 255


@pytest.mark.parametrize("field", ["label", "run_id"])
@pytest.mark.parametrize("bad", ["*", "../x", "cats\n", "x" * 65])
def test_parameter_models_refuse_bad_names_before_any_work(field, bad):
    from pydantic import ValidationError

    from flows.params import ScrapeParams

    fields = {"pages": ["http://a.invalid/"], "label": "cats"} | {field: bad}
    with pytest.raises(ValidationError, match=field):
        ScrapeParams(**fields)
