"""Champion pointers: read back only when they lead to a model under the data root's models/."""

from __future__ import annotations

import pytest

from storage.champions import Champion, champion_model, read_champion, write_champion
from storage.errors import ConfigError


def pointer(data_dir, model_path: str, dataset: str = "fruit") -> Champion:
    champion = Champion(
        dataset=dataset, run_id="r1", model_path=model_path, sha256="0" * 64,
        class_names=["a", "b"], decision="promoted", decided_at="2026-12-04T00:00:00+00:00",
    )  # fmt: skip
    write_champion(champion, data_dir)
    return champion


@pytest.fixture
def model(data_dir):
    path = data_dir / "models" / "r1" / "best.keras"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"model")
    return path


def test_a_pointer_under_models_is_read_back_resolved(data_dir, model):
    pointer(data_dir, str(data_dir / "models" / "r1" / ".." / "r1" / "best.keras"))
    assert read_champion("fruit", data_dir).model_path == str(model)
    pointer(data_dir, "models/r1/best.keras")  # relative: to the data root
    assert champion_model("champion:fruit", data_dir).model_path == str(model)


@pytest.mark.parametrize(
    "where",
    ["outside", "dotdot", "symlink", "champions", "relative-escape"],
)
def test_a_pointer_that_leads_elsewhere_is_refused_wherever_it_is_read(
    where, data_dir, model, tmp_path
):
    elsewhere = tmp_path / "elsewhere" / "best.keras"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"not ours")
    link = data_dir / "models" / "link"
    link.symlink_to(elsewhere.parent, target_is_directory=True)
    (data_dir / "models" / "champions").mkdir(exist_ok=True)
    target = {
        "outside": str(elsewhere),
        "dotdot": str(data_dir / "models" / ".." / ".." / "elsewhere" / "best.keras"),
        "symlink": str(link / "best.keras"),
        "champions": str(data_dir / "models" / "champions" / "fruit.json"),
        "relative-escape": "../elsewhere/best.keras",
    }[where]
    pointer(data_dir, target)
    for read in (lambda: read_champion("fruit", data_dir), lambda: champion_model("champion")):
        with pytest.raises(ConfigError, match="leads outside") as caught:
            read()
        assert "\n" not in str(caught.value) and "delete the pointer" in str(caught.value)


def test_a_pointer_with_a_nul_byte_is_refused_in_one_line(data_dir):
    pointer(data_dir, "models/r1/\x00best.keras")
    with pytest.raises(ConfigError, match="unusable model path"):
        read_champion("fruit", data_dir)
