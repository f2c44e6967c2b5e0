"""What a training run is before TensorFlow loads: the minimum input size rule."""

import subprocess
import sys

import pytest

from storage.errors import ConfigError
from tasks.train.settings import MIN_SIZE, MODELS, check_image_size


def test_each_model_has_one_minimum_input_side():
    assert set(MIN_SIZE) == set(MODELS)
    with pytest.raises(ConfigError, match="small_cnn needs images of at least 18 px, got 17 px"):
        check_image_size("small_cnn", (17, 40))  # the shorter side counts
    check_image_size("small_cnn", 18)
    with pytest.raises(ConfigError, match="at least 32 px, got 31 px: set image_size"):
        check_image_size("mobilenet_transfer", 31)


def test_the_rule_loads_no_tensorflow():
    # The parameter models, and so the CLI's start-up, import it: in a fresh interpreter.
    code = "import sys, flows.params, tasks.train.spec; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
