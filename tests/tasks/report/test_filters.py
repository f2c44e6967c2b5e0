"""The Filters section's kernels: classic ones and a trained model's first convolution."""

import numpy as np

from tasks.report.filters import classic_maps, learned_filters


def test_classic_kernels_find_a_vertical_edge():
    gray = np.zeros((8, 8))
    gray[:, 4:] = 1.0
    maps = dict(classic_maps(gray))
    vertical = maps["vertical edges (Sobel)"]
    assert np.abs(vertical[:, 3:5]).min() > 0 and np.abs(vertical[:, :2]).max() == 0
    assert np.abs(maps["horizontal edges (Sobel)"]).max() == 0
    assert np.allclose(maps["blur (3×3 box)"][:, 0], 0) and np.allclose(maps["sharpen"][:, 7], 1)


def test_learned_filters_skip_fixed_1x1_preprocessing_and_look_inside_nested_models(tmp_path):
    """Like resnet50_transfer: a fixed 1x1 RGB->BGR conv, then a nested base whose first
    spatial conv comes after padding. The maps must be that conv's output on the image."""
    import keras

    inner = keras.layers.Conv2D(2, 3, name="inner_conv", use_bias=False)
    base = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.ZeroPadding2D(1), inner])
    swap = keras.layers.Conv2D(3, 1, name="preprocess")
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base(swap(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
    swap.set_weights([np.eye(3)[::-1].reshape(1, 1, 3, 3), np.zeros(3)])
    kernel = np.zeros((3, 3, 3, 2))
    kernel[1, 1, 0, 0] = 1.0  # filter 0 passes its input's channel 0 (blue, after the swap)
    kernel[1, 1, 1, 1] = 2.0
    inner.set_weights([kernel])
    model.save(tmp_path / "m.keras")
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 2] = np.arange(16, dtype=np.uint8)[None, :] * 10
    rgb[..., 1] = 7

    learned = learned_filters(tmp_path / "m.keras", rgb)

    assert learned.layer == "inner_conv" and learned.kernels.shape == (3, 3, 3, 2)
    assert learned.maps.shape == (16, 16, 2) and learned.input_size == (16, 16)
    assert np.allclose(learned.maps[..., 0], rgb[..., 2]) and np.allclose(learned.maps[..., 1], 14)
