"""Every missing-weights message names an option the command really has, and the one folder.

Each message is made by the code path the command runs (offline, with an empty weights
folder); the options are read from the CLI the commands are generated into.
"""

from __future__ import annotations

import re

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from flows.cli import commands as cli
from flows.cli.demo import imagenet_choice
from flows.curate_images import curate_images
from flows.image_pipeline import check_inputs
from flows.params import CurateParams, PipelineParams, TrainParams
from flows.train_classifier import plan
from storage.errors import WeightsNotFoundError
from tasks.demo.imagenet import skipped_line
from tasks.predict.spec import BACKBONES
from tasks.weights import weights_folder_text

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def options_of(command: str) -> set[str]:
    """Every option name of `pixelpipe <command>`, as the CLI generates them."""
    group = typer.main.get_command(cli.app)
    return {name for param in group.commands[command].params for name in param.opts}


def check(command: str, message: str, option: str) -> None:
    """The message points at `option`, which `command` has, names no option it lacks, and
    names the weights folder in the same words as every other hint."""
    named = set(OPTION.findall(message))
    assert option in named, message
    assert named <= options_of(command), f"{named - options_of(command)} in: {message}"
    assert weights_folder_text() in message


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty weights folder and no downloads: every ImageNet file is missing."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("PIXELPIPE_OFFLINE", "1")
    return tmp_path


def images(root, labels=("a", "b"), n=2):
    for label in labels:
        (root / label).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 40), (60 * i, 90, 30)).save(root / label / f"{i}.png")
    return root


def test_the_option_pattern_finds_options_and_nothing_else():
    text = "pass --feature-weights PATH, or --x none; not a-b--c or --; $KERAS_HOME/models"
    assert set(OPTION.findall(text)) == {"--feature-weights", "--x"}
    assert {"--weights", "--dataset-dir"} <= options_of("train")
    assert "--weights" not in options_of("curate")  # the hint issue #25 found


def test_train(offline):
    images(offline / "ds" / "train")
    images(offline / "ds" / "val")
    params = TrainParams(dataset_dir=str(offline / "ds"), model="resnet50_transfer")
    with pytest.raises(WeightsNotFoundError) as caught:
        plan(params, "r1")
    check("train", str(caught.value), "--weights")
    params = params.model_copy(update={"weights": str(offline / "nope.h5")})
    with pytest.raises(WeightsNotFoundError) as caught:
        plan(params, "r1")
    check("train", str(caught.value), "--weights")


def test_predict_through_the_cli(offline):
    photos = images(offline / "photos", labels=("x",), n=1)
    result = CliRunner().invoke(
        cli.app, ["predict", "--model", "resnet50", "--inputs", str(photos)]
    )
    assert result.exit_code == 1
    check("predict", result.output, "--weights")


def test_curate_with_no_options_and_with_an_on_topic_check(offline):
    source = images(offline / "raw")
    with pytest.raises(WeightsNotFoundError) as caught:  # label issues: MobileNet features
        curate_images.fn(params=CurateParams(source_dir=str(source)))
    check("curate", str(caught.value), "--feature-weights")
    with pytest.raises(WeightsNotFoundError) as caught:  # on-topic: a ResNet50 classifier
        curate_images.fn(params=CurateParams(source_dir=str(source), expect=["a=banana"]))
    check("curate", str(caught.value), "--classifier-weights")


def test_demo_skip_line_and_wrong_path(offline):
    line = skipped_line(BACKBONES["resnet50"].file)
    check("demo", line, "--weights")
    assert "none" not in line  # random ImageNet weights are no use to the demo
    with pytest.raises(WeightsNotFoundError) as caught:
        imagenet_choice(str(offline / "nope.h5"))
    check("demo", str(caught.value), "--weights")


def test_the_demo_prints_the_same_line_on_its_first_run_and_the_next(tmp_path, monkeypatch):
    """Issue #25: the first run said /tmp/.keras/models, the next /root/.keras/models."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.keras yet: Keras has never run here
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("PIXELPIPE_OFFLINE", "1")
    first = imagenet_choice(None)
    (tmp_path / ".keras").mkdir()  # what importing Keras does
    assert imagenet_choice(None) == first == (None, skipped_line(BACKBONES["resnet50"].file))
    assert "~/.keras/models" in first[1]


@pytest.mark.parametrize("weights", ["imagenet", "nope.h5"])
def test_run_imagenet_stage(offline, weights):
    source = images(offline / "raw")
    params = PipelineParams(
        source_dir=str(source), imagenet_weights=weights, imagenet_targets=["alp"]
    )
    with pytest.raises(WeightsNotFoundError) as caught:
        check_inputs(params)
    check("run", str(caught.value), "--imagenet-weights")
