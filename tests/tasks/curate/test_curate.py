"""tasks.curate on generated images: planted mislabels found, clean sets left alone, features
computed once per content hash, off-topic images caught by a real (tiny) ImageNet-shaped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage.errors import ConfigError
from tasks.curate import label_issues
from tasks.curate.features import cached_features, feature_spec
from tasks.curate.inputs import list_images
from tasks.curate.tasks import check_label_issues, check_on_topic
from tasks.predict.labels import imagenet_labels
from tasks.predict.spec import resolve_model
from tests.image_attacks import hostile_jpeg, lying_ico, lying_webp

COLOURS = {"red": (200, 50, 40), "blue": (40, 70, 200)}


def picture(rng: np.random.Generator, colour: str, size: int = 32) -> Image.Image:
    pixels = np.array(COLOURS[colour]) + rng.normal(0, 40, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_folder(
    root: Path, per_class: int = 25, flips: int = 0, seed: int = 0
) -> tuple[Path, set[str]]:
    """root/<red|blue>/*.png; `flips` images of each class drawn in the other colour (planted
    label errors). Returns the folder and the planted files' paths."""
    rng = np.random.default_rng(seed)
    planted = set()
    for label, other in (("red", "blue"), ("blue", "red")):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            wrong = i < flips
            path = root / label / f"{i:03}.png"
            picture(rng, other if wrong else label).save(path)
            if wrong:
                planted.add(path.as_posix())
    return root, planted


@pytest.mark.parametrize("seed", range(5))
def test_planted_mislabeled_images_are_found(tmp_path, seed):
    root, planted = make_folder(tmp_path / "src", flips=3, seed=seed)
    images = list_images(root, None)
    spec = feature_spec("pixels", None, 0.25, 32)
    rows = check_label_issues.fn(images, spec, str(tmp_path / "cache"), 5, seed, 64, "r1")
    flagged = {r["path"] for r in rows if r["verdict"] == "suspect_label"}
    # Confident learning is statistical: over 10 seeds it found 59 of 60 planted errors with no
    # false alarm (C=0.1); each seed must find at least 5 of its 6 with at most one.
    assert len(planted & flagged) >= len(planted) - 1
    assert len(flagged - planted) <= 1
    believed = {r["path"]: r["suggested_label"] for r in rows if r["path"] in flagged & planted}
    assert all(Path(p).parent.name != label for p, label in believed.items())  # the other class
    assert {r["check"] for r in rows} == {"label_issues"} and len(rows) == 50


def test_a_clean_set_yields_few_flags(tmp_path):
    root, _ = make_folder(tmp_path / "src", flips=0, seed=7)
    spec = feature_spec("pixels", None, 0.25, 32)
    rows = check_label_issues.fn(list_images(root, None), spec, str(tmp_path / "c"), 5, 0, 64, "r")
    assert sum(r["verdict"] == "suspect_label" for r in rows) <= 1
    evidence = json.loads(rows[0]["evidence"])
    assert evidence["given"] == rows[0]["label"] and evidence["p_given"] > 0.5


def test_features_are_computed_once_per_content_hash(tmp_path):
    root, _ = make_folder(tmp_path / "src", per_class=3)
    (root / "red" / "copy.png").write_bytes((root / "red" / "000.png").read_bytes())
    images = list_images(root, None)
    paths, shas = [p for p, _, _ in images], [s for _, _, s in images]
    spec = feature_spec("mobilenet", None, 0.25, 32)  # the Keras path, random weights
    first, computed = cached_features(paths, shas, spec, tmp_path / "cache")
    assert computed == len(images) == 7
    cached = list((tmp_path / "cache" / spec.cache_key).glob("*.npy"))
    assert len(cached) == 6  # the copy shares its original's file
    again, computed = cached_features(paths, shas, spec, tmp_path / "cache")
    assert computed == 0
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    other = feature_spec("mobilenet", None, 0.5, 32)  # another backbone: its own cache
    assert other.cache_key != spec.cache_key


def test_too_few_images_per_class_is_a_clear_error():
    with pytest.raises(ConfigError, match="at least two classes"):
        label_issues.out_of_fold_probabilities(np.zeros((3, 4)), np.array([0, 0, 1]), 5, 0)


@pytest.fixture(scope="module")
def colour_classifier(tmp_path_factory) -> Path:
    """A real Keras model with ImageNet's 1,000 classes that sees colours: red -> banana,
    blue -> volcano. It stands in for ResNet50, whose weights cannot be downloaded here."""
    import keras

    names = imagenet_labels().names
    banana, volcano = names.index("banana"), names.index("volcano")
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(1000, activation="softmax")
    model = keras.Model(inputs, dense(x))
    kernel = np.zeros((3, 1000), np.float32)
    kernel[0, banana], kernel[2, volcano] = 20.0, 20.0
    dense.set_weights([kernel, np.zeros(1000, np.float32)])
    folder = tmp_path_factory.mktemp("imagenet-colours")
    model.save(folder / "best.keras")
    card = {"class_names": list(names), "image_size": [32, 32], "label_mode": "categorical"}
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder / "best.keras"


def test_off_topic_images_are_flagged_with_what_the_classifier_saw(tmp_path, colour_classifier):
    root, planted = make_folder(tmp_path / "src", per_class=6, flips=2)
    images = list_images(root, ["red"])  # the "red" label: banana expected
    spec = resolve_model(str(colour_classifier))
    rows = check_on_topic.fn(images, spec, {"red": ["banana"]}, 1, 4, "r2")
    off = {r["path"] for r in rows if r["verdict"] == "off_topic"}
    assert off == {p for p in planted if "/red/" in p}
    flagged = next(r for r in rows if r["verdict"] == "off_topic")
    assert flagged["suggested_label"] == "volcano" and flagged["model"] == spec.identity
    assert json.loads(flagged["evidence"])[0]["class"] == "volcano"


def test_unknown_imagenet_class_fails_before_scoring(tmp_path, colour_classifier):
    root, _ = make_folder(tmp_path / "src", per_class=2)
    spec = resolve_model(str(colour_classifier))
    with pytest.raises(ConfigError, match="not a class of this model"):
        check_on_topic.fn(list_images(root, None), spec, {"red": ["bananna"]}, 5, 4, "r")


def test_costly_images_get_no_features(tmp_path):
    # The loader is predict's pipeline: tests/tasks/predict/test_image_budgets.py shows it
    # refuses these from their headers, never decoding them.
    (tmp_path / "scans.jpg").write_bytes(hostile_jpeg(repeats=800))
    (tmp_path / "favicon.ico").write_bytes(lying_ico(12000))
    (tmp_path / "canvas.webp").write_bytes(lying_webp((13000, 13000)))
    picture(np.random.default_rng(0), "red").save(tmp_path / "fine.png")
    paths = [str(tmp_path / n) for n in ("scans.jpg", "favicon.ico", "canvas.webp", "fine.png")]
    spec = feature_spec("pixels", None, 0.25, 32)
    features, computed = cached_features(paths, list("abcd"), spec, tmp_path / "cache")
    assert computed == 4 and [f is None for f in features] == [True, True, True, False]
