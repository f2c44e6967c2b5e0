"""The one weights folder and the one hint every missing-weights message ends with."""

import os
import stat
from pathlib import Path

import pytest

from storage.errors import WeightsNotFoundError
from tasks import weights as W


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home folder without ~/.keras, and no KERAS_HOME: Keras's defaults."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    return tmp_path


def test_the_default_folder_is_said_with_a_tilde_before_and_after_keras_creates_it(home):
    # The demo's first run (no ~/.keras yet) and the next (Keras created it) say the same.
    before = (W.weights_folder_text(), W.weights_hint("--weights", "r.h5"))
    assert W.keras_cache_dirs() == [home / ".keras"]  # not /tmp/.keras: home is writable
    (home / ".keras").mkdir()
    assert (W.weights_folder_text(), W.weights_hint("--weights", "r.h5")) == before
    assert before[0] == "~/.keras/models"


def test_keras_home_moves_the_folder(home, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(home / "elsewhere"))
    assert W.weights_folder_text() == str(home / "elsewhere" / "models")
    monkeypatch.setenv("KERAS_HOME", str(home / ".keras"))  # the default, named explicitly
    assert W.weights_folder_text() == "~/.keras/models"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_home_falls_back_to_tmp_like_keras(home):
    (home / ".keras").mkdir()
    (home / ".keras").chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert W.keras_cache_dirs()[0] == Path("/tmp/.keras")
    finally:
        (home / ".keras").chmod(stat.S_IRWXU)


def test_the_hint_names_the_folder_the_variable_and_the_option_it_is_given(home):
    hint = W.weights_hint("--feature-weights", "m.h5")
    assert "put m.h5 in ~/.keras/models" in hint and "$KERAS_HOME/models" in hint
    assert "--feature-weights PATH" in hint and "--feature-weights none" in hint
    assert "--weights" not in hint.replace("--feature-weights", "")
    assert "none" not in W.weights_hint("--weights", "m.h5", random=False)
    local = W.weights_hint("--imagenet-weights")
    assert "--imagenet-weights PATH with an existing file" in local
    assert "--imagenet-weights imagenet for the file in ~/.keras/models" in local


def test_both_missing_weights_errors_end_with_the_hint(home, monkeypatch):
    monkeypatch.setenv(W.OFFLINE_ENV, "1")
    with pytest.raises(WeightsNotFoundError) as caught:
        W.imagenet_weights("resnet50", "r.h5", "http://weights.invalid/r.h5", "ab" * 16, "--w")
    message = str(caught.value)
    assert message.startswith(
        "ImageNet weights for resnet50 are not in the Keras cache: ~/.keras/models/r.h5"
    )
    assert f"(md5 {'ab' * 16})" in message and "downloads are off" in message
    assert message.endswith(W.weights_hint("--w", "r.h5") + ".")
    error = W.missing_weights_file(home / "nope.h5", "--w")
    assert isinstance(error, FileNotFoundError)
    assert str(error) == f"weights file {home / 'nope.h5'} does not exist: {W.weights_hint('--w')}"


def test_a_cached_file_is_found_in_the_folder(home):
    folder = home / ".keras" / "models"
    folder.mkdir(parents=True)
    (folder / "r.h5").write_bytes(b"weights")
    assert W.cached_weights("r.h5") == folder / "r.h5"
    assert W.imagenet_weights("resnet50", "r.h5", "http://weights.invalid/r.h5") == folder / "r.h5"
    assert W.cached_weights("r.h5", md5="0" * 32) is None  # a damaged copy is not used
