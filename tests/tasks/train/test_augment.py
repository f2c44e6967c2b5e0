"""Each augmentation knob does what its ImageDataGenerator name says."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from tasks.train.augment import (
    augment_preview,
    augment_preview_task,
    augmentation_layers,
    build_augmentation,
    knobs,
)

N, S = 16, 33  # odd side: the centre is a pixel


def run(augmentation: dict, images: np.ndarray, seed: int = 1) -> np.ndarray:
    pipeline = build_augmentation(augmentation, seed)
    assert pipeline is not None
    return np.asarray(pipeline(images, training=True))


def bar(horizontal: bool = True) -> np.ndarray:
    """N copies of a black image with a 1-px white line through the centre."""
    x = np.zeros((N, S, S, 3), "float32")
    if horizontal:
        x[:, S // 2, :, :] = 255
    else:
        x[:, :, S // 2, :] = 255
    return x


def gradient() -> np.ndarray:
    """Every pixel distinct: red grows left to right, green top to bottom."""
    ramp = np.arange(S, dtype="float32") * 7
    x = np.zeros((N, S, S, 3), "float32")
    x[..., 0] = ramp[None, None, :]
    x[..., 1] = ramp[None, :, None]
    return x


def slope(image: np.ndarray) -> float:
    """Least-squares slope dy/dx of the bright pixels (a line's tilt)."""
    ys, xs = np.nonzero(image[..., 0] > 127)
    return float(np.polyfit(xs, ys, 1)[0])


def test_all_knobs_off_means_no_augmentation():
    assert build_augmentation(None) is None
    assert build_augmentation({"rotation_range": 0, "zoom_range": (1, 1)}) is None
    with pytest.raises(ValueError, match="unknown augmentation knob"):
        knobs({"rotation": 10})


def test_horizontal_flip_mirrors_left_right_sometimes():
    x = gradient()
    y = run({"horizontal_flip": True}, x)
    flipped = [np.array_equal(y[i], x[i, :, ::-1]) for i in range(N)]
    same = [np.array_equal(y[i], x[i]) for i in range(N)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert any(flipped) and any(same)


def test_vertical_flip_mirrors_top_bottom_sometimes():
    x = gradient()
    y = run({"vertical_flip": True}, x)
    flipped = [np.array_equal(y[i], x[i, ::-1]) for i in range(N)]
    same = [np.array_equal(y[i], x[i]) for i in range(N)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert any(flipped) and any(same)


def test_rotation_tilts_a_line_within_the_range_in_degrees():
    y = run({"rotation_range": 30, "fill_mode": "constant"}, bar())
    angles = [math.degrees(math.atan(slope(img))) for img in y]
    assert max(abs(a) for a in angles) <= 31
    assert max(abs(a) for a in angles) > 10  # it does rotate, not just stay put
    assert len({round(a) for a in angles}) > 4  # by a random angle per image


def test_width_shift_moves_columns_within_the_share_of_the_width():
    x = bar(horizontal=False)  # a vertical line in column 16
    y = run({"width_shift_range": 0.2, "fill_mode": "constant"}, x)
    columns = [np.nonzero(img[S // 2, :, 0] > 127)[0].mean() for img in y]
    shifts = np.array(columns) - S // 2
    assert np.abs(shifts).max() <= 0.2 * S + 1 and np.abs(shifts).max() >= 2
    # Only horizontally: every row still holds the line.
    assert all((img[:, :, 0] > 127).any(axis=1).all() for img in y)


def test_height_shift_moves_rows_within_the_share_of_the_height():
    y = run({"height_shift_range": 0.2, "fill_mode": "constant"}, bar())
    rows = np.array([np.nonzero(img[:, S // 2, 0] > 127)[0].mean() for img in y]) - S // 2
    assert np.abs(rows).max() <= 0.2 * S + 1 and np.abs(rows).max() >= 2


def test_shear_slants_a_horizontal_line_by_at_most_the_angle_about_the_centre():
    y = run({"shear_range": 20, "fill_mode": "constant"}, bar())
    slopes = np.array([slope(img) for img in y])
    # Classic shear: y_in = y - sin(s)(x - cx), so the line's slope is sin(s), |s| <= 20 deg.
    assert np.abs(slopes).max() <= math.sin(math.radians(20)) + 0.03
    assert np.abs(slopes).max() > 0.1
    # About the centre: the centre pixel stays on the line.
    assert all(img[S // 2, S // 2, 0] > 127 for img in y)
    # A vertical line through the centre is not moved by this shear.
    v = run({"shear_range": 20, "fill_mode": "constant"}, bar(horizontal=False))
    assert np.allclose(v[:, :, S // 2, 0], 255, atol=1)


def test_zoom_above_one_zooms_out_and_below_one_zooms_in():
    x = np.zeros((N, S, S, 3), "float32")
    x[:, 8:25, 8:25] = 255  # a 17-px centred square
    out = run({"zoom_range": (2.0, 2.0), "fill_mode": "constant"}, x)
    inn = run({"zoom_range": (0.5, 0.5), "fill_mode": "constant"}, x)
    side = lambda img: (img[S // 2, :, 0] > 127).sum()  # noqa: E731
    assert all(7 <= side(img) <= 10 for img in out)  # half as wide
    assert all(side(img) == S for img in inn)  # twice as wide: fills the frame


def test_brightness_multiplies_and_clips():
    x = np.full((N, S, S, 3), 100.0, "float32")
    assert np.allclose(run({"brightness_range": (0.5, 0.5)}, x), 50.0)
    assert np.allclose(run({"brightness_range": (3.0, 3.0)}, x), 255.0)  # clipped
    y = run({"brightness_range": (0.5, 1.5)}, x)
    means = y.mean(axis=(1, 2, 3))
    assert means.min() >= 50 - 1e-3 and means.max() <= 150 + 1e-3 and means.std() > 5
    assert all(np.allclose(img, img.flat[0]) for img in y)  # one factor per image


@pytest.mark.parametrize("mode", ["constant", "nearest", "wrap"])
def test_fill_mode_fills_the_uncovered_border(mode):
    x = gradient()  # red = 7 * column
    y = run({"width_shift_range": 0.3, "fill_mode": mode, "cval": 7.0}, x, seed=3)
    checked = 0
    for img in y:
        shift = S // 2 - img[S // 2, S // 2, 0] / 7  # columns the content moved right
        if abs(shift) < 1.5:
            continue
        checked += 1
        edge = img[:, 0] if shift > 0 else img[:, -1]  # a column no input pixel lands on
        if mode == "constant":
            assert np.allclose(edge, 7.0)
        elif mode == "nearest":  # repeats the image's own edge column
            assert np.allclose(edge[:, 0], 0.0 if shift > 0 else 7 * (S - 1), atol=1e-3)
        else:  # wrap: filled from the opposite side of the image
            assert (edge[:, 0] > 7 * S / 2).all() if shift > 0 else (edge[:, 0] < 7 * S / 2).all()
        assert np.allclose(edge[:, 1], x[0, :, 0, 1]) or mode == "constant"  # rows untouched
    assert checked >= 3


def test_every_geometric_layer_uses_the_chosen_fill_mode():
    knobs_on = {
        "rotation_range": 10,
        "width_shift_range": 0.1,
        "shear_range": 5,
        "zoom_range": (0.9, 1.1),
        "fill_mode": "wrap",
        "horizontal_flip": True,
    }
    layers = augmentation_layers(knobs_on)
    assert [type(layer).__name__ for layer in layers] == ["RandomAffine", "RandomFlip"]
    assert layers[0].fill_mode == "wrap"


def test_seeded_augmentation_is_reproducible():
    a = run({"rotation_range": 20, "horizontal_flip": True}, gradient(), seed=5)
    b = run({"rotation_range": 20, "horizontal_flip": True}, gradient(), seed=5)
    assert np.array_equal(a, b)


def test_augment_preview_writes_a_grid(tmp_path):
    for name, level in (("a", 30), ("b", 220)):
        folder = tmp_path / "ds" / "train" / name
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20), (level, i * 50, 0)).save(folder / f"{i}.png")
    out = augment_preview(
        tmp_path / "ds", {"horizontal_flip": True}, tmp_path / "p.png", n=5, images=3
    )
    with Image.open(out) as grid:
        # 3 rows (images) x 6 columns (original + 5 variants), 20 px each, 2 px gaps.
        assert grid.size == (6 * 22 - 2, 3 * 22 - 2)
        top_left = np.asarray(grid)[0, 0]
    assert top_left[0] == 30  # classes alternate: first row is class a's first image
    again = augment_preview_task.fn(str(tmp_path / "ds"), None, str(tmp_path / "q.png"), n=2)
    with Image.open(again) as grid:  # the task the report reuses; no augmentation: copies
        pixels = np.asarray(grid)
    assert np.array_equal(pixels[:20, :20], pixels[:20, 22:42])


def test_fused_affine_matches_image_data_generator_for_the_same_parameters():
    import tensorflow as tf
    from keras import ops

    from tasks.train.augment import RandomAffine

    x = gradient()[:1]
    x[..., 2] = np.random.default_rng(0).uniform(0, 255, (S, S))  # texture, not just ramps
    params = {"theta": 15.0, "tx": 3.0, "ty": -2.0, "shear": 10.0, "zx": 0.9, "zy": 1.1}
    legacy = tf.keras.preprocessing.image.ImageDataGenerator(fill_mode="nearest")
    # Today's legacy generator builds its matrix in (column, row) order, so its tx (drawn
    # from height_shift_range) moves images sideways; RandomAffine keeps (row, column), as
    # the names say. Same matrix otherwise: compare on the transposed image.
    expected = legacy.apply_transform(x[0].transpose(1, 0, 2).copy(), params).transpose(1, 0, 2)
    one = lambda v: ops.convert_to_tensor([v], "float32")  # noqa: E731
    transform = RandomAffine.transform(
        one(math.radians(15)), one(3.0), one(-2.0), one(math.radians(10)), one(0.9), one(1.1),
        float(S), float(S),
    )  # fmt: skip
    got = np.asarray(ops.image.affine_transform(x, transform, fill_mode="nearest"))[0]
    inner = (slice(4, -4), slice(4, -4))  # edges differ only in how each library extends them
    assert np.abs(got[inner] - expected[inner]).max() < 0.5
    # tx=3 moved rows: the green (row) ramp at the centre reads 3 rows further.
    plain = RandomAffine.transform(*(one(v) for v in (0, 3.0, 0, 0, 1, 1)), float(S), float(S))
    shifted = np.asarray(ops.image.affine_transform(x, plain, fill_mode="nearest"))[0]
    assert shifted[S // 2, S // 2, :2].tolist() == [7 * (S // 2), 7 * (S // 2 + 3)]
