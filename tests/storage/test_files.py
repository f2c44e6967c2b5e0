"""storage.files: the one atomic writer and the image file names."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from storage import files


def test_concurrent_writers_of_one_path_never_collide(tmp_path):
    target = tmp_path / "report.html"
    texts = [f"writer {i}\n" * 100 for i in range(80)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda text: files.write_text(target, text), texts))
    assert target.read_text() in texts  # one whole write won, none was half-written
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "card.json"
    files.write_text(target, "old")

    def explode(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash while saving")

    with pytest.raises(RuntimeError, match="crash while saving"):
        files.write_with(target, explode)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_image_files_lists_images_only_and_skips_hidden_temp_files(tmp_path):
    for name in ["b.JPG", "a.png", "notes.txt", ".a.png.123.tmp", "c.webp"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in files.image_files(tmp_path)] == ["a.png", "b.JPG", "c.webp"]
    assert files.TF_IMAGE_EXTENSIONS <= files.IMAGE_EXTENSIONS
