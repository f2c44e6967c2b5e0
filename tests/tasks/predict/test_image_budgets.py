"""predict's loader (and curate's, which is the same pipeline) opens images through the gate:
files over a decode budget are `corrupt` rows with the reason, and Pillow never decodes them."""

from __future__ import annotations

import pytest

from storage.images import ImageBudgetError
from tasks.predict.images import CORRUPT, OK, image_batches, load_pixels
from tasks.predict.preprocess import Preprocessing
from tests.image_attacks import (
    hostile_jpeg,
    lying_ico,
    lying_webp,
    pillow_decodes,
    progressive_jpeg,
)

ATTACKS = {
    "scans.jpg": (hostile_jpeg(repeats=800), "more than 100 scans"),
    "favicon.ico": (lying_ico(12000), "ICO frame 12000x12000"),
    "canvas.webp": (lying_webp((13000, 13000)), "13000x13000"),
}


@pytest.fixture
def attacks(tmp_path) -> dict[str, str]:
    for name, (data, _) in ATTACKS.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "fine.jpg").write_bytes(progressive_jpeg((40, 30)))
    return {name: str(tmp_path / name) for name in [*ATTACKS, "fine.jpg"]}


@pytest.mark.parametrize("mode", ["stretch", "crop", "pad"])
def test_the_loader_refuses_costly_images_before_decoding(attacks, mode):
    prep = Preprocessing(mode, "bilinear")
    for name, (_, reason) in ATTACKS.items():
        with pillow_decodes() as loads, pytest.raises(ImageBudgetError, match=reason):
            load_pixels(attacks[name], (16, 16), prep)
        assert loads == [], name
    with pillow_decodes() as loads:
        assert load_pixels(attacks["fine.jpg"], (16, 16), prep).shape == (16, 16, 3)
    assert loads  # the counter sees a real decode


def test_costly_images_are_corrupt_rows_with_the_reason(attacks):
    rows = [
        (int(status), error.decode())
        for _, statuses, errors in image_batches(list(attacks.values()), (16, 16), batch_size=2)
        for status, error in zip(statuses.numpy(), errors.numpy(), strict=True)
    ]
    assert [s for s, _ in rows] == [CORRUPT, CORRUPT, CORRUPT, OK]
    for (_, error), (_, reason) in zip(rows, ATTACKS.values(), strict=False):
        assert error.startswith("ImageBudgetError") and reason in error
