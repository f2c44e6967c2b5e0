"""Resize protocols against hand-computed pixels, and where each model's protocol comes from."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from flows.params import PredictParams
from storage.model_card import ModelCard
from tasks.predict import engines  # noqa: F401  (before spec: spec <-> engines import cycle)
from tasks.predict.images import image_batches, load_pixels
from tasks.predict.preprocess import Preprocessing, crop_box, imagenet_standard
from tasks.predict.spec import resolve_model


def ramp(path: Path, width: int = 64, height: int = 32) -> Path:
    """R = 2 * column, G = 4 * row, B = 7: every pixel says where it came from."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    pixels = np.stack([2 * x, 4 * y, np.full_like(x, 7)], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(path)  # PNG: lossless
    return path


def test_nearest_crop_picks_the_hand_computed_centre_pixels(tmp_path):
    path = ramp(tmp_path / "ramp.png")  # 64 wide, 32 tall
    # fraction 1: the short side 32 -> 4 (scale 1/8), the long side 64 -> 8; centre 4 of 8
    # columns are 2..5. Nearest takes source pixel floor((i + 0.5) * 8) of scaled index i.
    got = load_pixels(str(path), (4, 4), Preprocessing("crop", "nearest", 1.0))
    cols = [int((i + 0.5) * 8) for i in range(2, 6)]  # 20, 28, 36, 44
    rows = [int((j + 0.5) * 8) for j in range(4)]  # 4, 12, 20, 28
    assert cols == [20, 28, 36, 44] and rows == [4, 12, 20, 28]
    np.testing.assert_array_equal(got[..., 0], np.tile(np.array(cols) * 2, (4, 1)))
    np.testing.assert_array_equal(got[..., 1], np.tile(np.array(rows)[:, None] * 4, (1, 4)))
    assert (got[..., 2] == 7).all()


def test_bilinear_imagenet_crop_matches_the_hand_computed_reference(tmp_path):
    path = ramp(tmp_path / "ramp.png")
    # 8x8 at fraction 0.5: the short side 32 -> 8 / 0.5 = 16 (scale 1/2), so 64x32 -> 32x16,
    # and the centre 8x8 starts at column 12, row 4. Scaled pixel i sits at source position
    # (12 + i + 0.5) * 2 = 25 + 2i; the ramp's value there is 2 * position - 1 = 49 + 4i
    # (pixel k holds 2k at its centre k + 0.5). Rows: (4 + j + 0.5) * 2 = 9 + 2j -> 34 + 8j.
    got = load_pixels(str(path), (8, 8), Preprocessing("crop", "bilinear", 0.5))
    expected_r = np.tile(49 + 4 * np.arange(8), (8, 1))
    expected_g = np.tile((34 + 8 * np.arange(8))[:, None], (1, 8))
    np.testing.assert_allclose(got[..., 0], expected_r, atol=1)  # Pillow's 8-bit rounding
    np.testing.assert_allclose(got[..., 1], expected_g, atol=1)
    # The one-step box resize equals resize-then-crop, the protocol as usually written.
    with Image.open(path) as img:
        two_step = np.asarray(img.convert("RGB").resize((32, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(got, two_step[4:12, 12:20].astype(np.float32))


def test_imagenet_crop_box_is_the_centre_of_the_short_side_at_256():
    # A 500x375 photo: short side 375 -> 256, long 500 -> 341; the centre 224 starts at
    # (58, 16) in that scaled image, i.e. at 58 * 500/341, 16 * 375/256 in the source.
    left, top, right, bottom = crop_box(500, 375, (224, 224), 0.875)
    assert left == pytest.approx(58 * 500 / 341) and top == pytest.approx(16 * 375 / 256)
    assert right - left == pytest.approx(224 * 500 / 341)
    assert bottom - top == pytest.approx(224 * 375 / 256)


def test_pad_letterboxes_and_stretch_is_load_img(tmp_path):
    path = ramp(tmp_path / "ramp.png")
    padded = load_pixels(str(path), (8, 8), Preprocessing("pad", "nearest"))
    # 64x32 -> 8x4 in the middle rows 2..5; black above and below.
    assert (padded[:2] == 0).all() and (padded[6:] == 0).all() and padded[2:6, :, 2].min() == 7
    stretched = load_pixels(str(path), (8, 8), Preprocessing("stretch", "bicubic"))
    classic = keras.utils.img_to_array(
        keras.utils.load_img(path, target_size=(8, 8), interpolation="bicubic")
    )
    np.testing.assert_array_equal(stretched, classic)


def test_the_pipeline_applies_the_protocol(tmp_path):
    path = str(ramp(tmp_path / "ramp.png"))
    prep = Preprocessing("crop", "bilinear", 0.5)
    (pixels, status, _error), *_ = image_batches([path], (8, 8), 4, prep)
    assert int(status[0]) == 0
    np.testing.assert_array_equal(pixels.numpy()[0], load_pixels(path, (8, 8), prep))


def test_backbones_default_to_the_imagenet_protocol_and_flags_override_it():
    spec = resolve_model("resnet50", "none")
    assert spec.preprocessing == imagenet_standard("keras.applications.resnet50.preprocess_input")
    assert spec.preprocessing.describe() == (
        "crop(0.875)/bilinear; keras.applications.resnet50.preprocess_input"
    )
    classic = resolve_model("resnet50", "none", resize_mode="stretch", interpolation="nearest")
    assert (classic.preprocessing.resize_mode, classic.preprocessing.interpolation) == (
        "stretch",
        "nearest",
    )
    tighter = resolve_model("mobilenet_v2", "none", crop_fraction=0.95)
    assert tighter.preprocessing.describe().startswith("crop(0.95)/bilinear; ")


def write_model(model_dir: Path, card: dict) -> None:
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    model_dir.mkdir(parents=True)
    model.save(model_dir / "best.keras")
    (model_dir / "model_card.json").write_text(json.dumps(card))


def test_trained_models_use_their_cards_protocol_and_old_cards_read_as_trained(tmp_path):
    old = {"class_names": ["a", "b"], "image_size": [8, 8], "label_mode": "int"}
    write_model(tmp_path / "old", old)
    spec = resolve_model(str(tmp_path / "old"))
    # A card from before these fields: image_dataset_from_directory's bilinear stretch.
    assert (spec.preprocessing.resize_mode, spec.preprocessing.interpolation) == (
        "stretch",
        "bilinear",
    )
    write_model(tmp_path / "cropped", old | {"resize_mode": "crop", "crop_fraction": 1.0})
    cropped = resolve_model(str(tmp_path / "cropped"))
    assert cropped.preprocessing.describe().startswith("crop(1)/bilinear; raw 0-255")
    assert ModelCard.read(tmp_path / "cropped").resize_mode == "crop"


def test_bad_preprocessing_parameters_fail_with_what_to_change():
    with pytest.raises(ValidationError, match="crop_fraction applies to resize_mode crop"):
        PredictParams(inputs=["x"], resize_mode="stretch", crop_fraction=0.9)
    with pytest.raises(ValidationError, match="crop_fraction"):
        PredictParams(inputs=["x"], crop_fraction=0)
    with pytest.raises(ValidationError, match="resize_mode"):
        PredictParams(inputs=["x"], resize_mode="squash")
