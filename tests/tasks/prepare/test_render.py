"""tasks.pixels, tasks.images and tasks.dataset_plan on real files made here with Pillow."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from storage.errors import ConfigError
from tasks.prepare import folders, plan
from tasks.prepare import render as pixels
from tasks.prepare import tasks as images
from tasks.prepare.columns import INSPECTION, RENDERED, inspection_table, manifest_frame

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
SETTINGS = pixels.RenderSettings(image_size=32)


# ------------------------------------------------------------------ image makers (shared)


def halves(size=(40, 20), left=RED, right=BLUE) -> Image.Image:
    """An RGB picture whose left half is one colour and right half another."""
    img = Image.new("RGB", size, right)
    img.paste(left, (0, 0, size[0] // 2, size[1]))
    return img


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored left-red/right-blue with Orientation 6: displayed turned 90° clockwise, so the
    viewer sees red on top and blue at the bottom."""
    exif = Image.Exif()
    exif[0x0112] = 6
    halves((48, 24)).save(path, "JPEG", quality=95, exif=exif)
    return path


def every_mode(folder: Path) -> dict[str, Path]:
    """One small file per decoding case; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}

    def save(name: str, img: Image.Image, **kwargs) -> None:
        made[name] = folder / name
        img.save(made[name], **kwargs)

    save("rgb.jpg", halves((40, 30), GREEN, BLUE))
    save("gray.PNG", Image.linear_gradient("L").resize((30, 30)))
    save("gray_alpha.png", Image.new("LA", (20, 20), (10, 0)))  # fully transparent -> white
    rgba = Image.new("RGBA", (20, 20), (0, 0, 255, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 10, 20))  # left half opaque red, right transparent
    save("rgba.png", rgba)
    save("palette.gif", halves((20, 20), RED, GREEN).convert("P"))
    save("cmyk.jpg", Image.new("CMYK", (20, 20), (0, 255, 255, 0)))  # red in ink
    save("deep16.png", Image.fromarray(np.full((20, 20), 32768, dtype=np.uint16)))  # mid-gray
    save("photo.WEBP", halves((30, 20)), lossless=True)
    save("picture.bmp", halves((22, 22), BLUE, RED))
    frames = [Image.new("RGB", (16, 16), c).convert("P") for c in (RED, BLUE)]
    made["anim.gif"] = folder / "anim.gif"
    frames[0].save(made["anim.gif"], save_all=True, append_images=frames[1:], duration=50)
    made["rotated.JPEG"] = exif_rotated_jpeg(folder / "rotated.JPEG")
    return made


def broken_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    whole = io.BytesIO()  # noise, so the header is a small share and the cut lands in the data
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(whole, "JPEG")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    text = folder / "notes.jpg"
    text.write_text("this is not a picture\n")
    return {"truncated.jpg": truncated, "notes.jpg": text}


def pixel(path: Path, xy=(16, 16)) -> tuple[int, int, int]:
    with Image.open(path) as img:
        return img.convert("RGB").getpixel(xy)


def close(actual, expected, tol=40) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


# ------------------------------------------------------------------ decoding and resizing


def test_every_mode_renders_to_8bit_rgb_of_the_right_size(tmp_path):
    made = every_mode(tmp_path / "src")
    expected_centre = {
        "gray_alpha.png": WHITE,  # transparent composited on white
        "cmyk.jpg": RED,
        "deep16.png": (128, 128, 128),  # scaled from 16 bits, not clipped to white
        "anim.gif": RED,  # first frame only
    }
    for name, source in made.items():
        out = tmp_path / "out" / f"{name}.jpg"
        assert pixels.render_file(str(source), str(out), SETTINGS) == ("ok", None), name
        with Image.open(out) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (32, 32)), name
        if name in expected_centre:
            assert close(pixel(out), expected_centre[name]), (name, pixel(out))
    rgba_out = tmp_path / "out" / "rgba.png.jpg"
    assert close(pixel(rgba_out, (4, 16)), RED) and close(pixel(rgba_out, (28, 16)), WHITE)


def test_exif_orientation_is_applied(tmp_path):
    source = exif_rotated_jpeg(tmp_path / "r.jpg")
    out = tmp_path / "r-out.png"
    settings = pixels.RenderSettings(image_size=32, image_format="png")
    assert pixels.render_file(str(source), str(out), settings) == ("ok", None)
    assert close(pixel(out, (16, 3)), RED) and close(pixel(out, (16, 28)), BLUE)
    info = pixels.inspect_file(str(source))
    assert (info["width"], info["height"], info["format"]) == (24, 48, "JPEG")


def test_resize_modes(tmp_path):
    wide = Image.new("RGB", (64, 32), GREEN)
    wide.paste(RED, (0, 0, 8, 32))
    wide.paste(BLUE, (56, 0, 64, 32))
    stretched = pixels.fit(wide, 32, "stretch", "lanczos")
    cropped = pixels.fit(wide, 32, "crop", "lanczos")
    padded = pixels.fit(wide, 32, "pad", "lanczos")
    assert stretched.size == cropped.size == padded.size == (32, 32)
    assert close(stretched.getpixel((1, 16)), RED) and close(stretched.getpixel((30, 16)), BLUE)
    assert close(cropped.getpixel((1, 16)), GREEN) and close(cropped.getpixel((30, 16)), GREEN)
    assert padded.getpixel((16, 2)) == (0, 0, 0) and padded.getpixel((16, 29)) == (0, 0, 0)
    assert close(padded.getpixel((1, 16)), RED) and close(padded.getpixel((16, 16)), GREEN)
    bicubic = images_array(pixels.fit(wide, 32, "stretch", "bicubic"))
    difference = np.abs(bicubic - images_array(stretched))
    assert difference.max() > 0 and difference.mean() < 8  # another filter, the same picture


def images_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def test_a_gray_picture_is_resized_as_gray_with_the_pixels_of_its_rgb(tmp_path):
    # render_file resizes "L" (a third of the work) and replicates it into RGB afterwards.
    noise = np.random.default_rng(1).integers(0, 256, (45, 70), dtype=np.uint8)
    gray = Image.fromarray(noise, "L")
    assert pixels.to_8bit(gray).mode == "L"
    for mode in ("stretch", "crop", "pad"):
        settings = pixels.RenderSettings(image_size=32, resize_mode=mode, image_format="png")
        outputs = []
        for name, img in (("gray", gray), ("rgb", gray.convert("RGB"))):
            img.save(tmp_path / f"{name}.png")
            outputs.append(tmp_path / "out" / mode / f"{name}.png")
            render = pixels.render_file(str(tmp_path / f"{name}.png"), str(outputs[-1]), settings)
            assert render == ("ok", None)
        with Image.open(outputs[0]) as from_gray, Image.open(outputs[1]) as from_rgb:
            assert from_gray.mode == "RGB"
            assert np.array_equal(np.asarray(from_gray), np.asarray(from_rgb)), mode


def test_draft_request_keeps_twice_the_needed_pixels():
    assert pixels.draft_request((4000, 3000), (224, 224), "stretch") == (448, 448)
    assert pixels.draft_request((4000, 2000), (224, 224), "crop") == (896, 448)
    assert pixels.draft_request((4000, 2000), (224, 224), "pad") == (448, 224)
    assert pixels.draft_request((300, 200), (224, 224), "stretch") == (300, 200)  # no upscale


def test_big_jpeg_is_decoded_at_reduced_scale_and_still_right(tmp_path):
    source = tmp_path / "big.jpg"
    halves((2048, 1024)).save(source, "JPEG")
    with Image.open(source) as img:
        rgb = pixels.load_8bit(img, SETTINGS)
    assert rgb.size == (256, 128)  # 1/8 scale: >= 2 x 32 on both sides
    out = tmp_path / "big-out.jpg"
    assert pixels.render_file(str(source), str(out), SETTINGS) == ("ok", None)
    assert close(pixel(out, (4, 16)), RED) and close(pixel(out, (28, 16)), BLUE)


def test_broken_files_become_statuses_not_crashes(tmp_path):
    broken = broken_files(tmp_path)
    assert pixels.inspect_file(str(broken["notes.jpg"]))["status"] == "corrupt"
    assert "error" not in pixels.inspect_file(str(broken["truncated.jpg"]))  # header is fine
    status, error = pixels.render_file(
        str(broken["truncated.jpg"]), str(tmp_path / "t.jpg"), SETTINGS
    )
    assert status == "corrupt" and "truncated" in error
    assert not (tmp_path / "t.jpg").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_inspect_batch_returns_one_compact_table_a_batch(tmp_path):
    """Prefect holds a task's result (and links every item of a returned list): a batch is one
    Arrow table of fixed-width columns, never a dict per file; the manifest writes the hashes
    back as imagehash's hex."""
    made = every_mode(tmp_path / "src") | broken_files(tmp_path / "src")
    paths = [str(p) for _, p in sorted(made.items())]
    table = images.inspect_batch.fn([(p, 1, 1) for p in paths])
    assert isinstance(table, pa.Table) and table.schema == INSPECTION
    assert table.num_rows == len(paths)
    assert table.schema.field("phash").type == pa.uint64()
    infos = [pixels.inspect_file(p) for p in paths]
    assert table.column("sha256").to_pylist() == [i["sha256"] for i in infos]
    assert table.column("status").to_pylist() == [i.get("status") for i in infos]
    rows = pd.DataFrame({"phash": table.column("phash").to_pandas(types_mapper=_as_nullable)})
    written = manifest_frame(rows, run_id="r")["phash"].tolist()
    assert [w if isinstance(w, str) else None for w in written] == [
        i.get("phash") for i in infos
    ]  # fmt: skip
    assert sum(isinstance(w, str) for w in written) >= len(paths) - 2


def _as_nullable(t: pa.DataType):
    return pd.UInt64Dtype() if t == pa.uint64() else None


def test_render_batch_uses_the_process_pool(tmp_path):
    made = every_mode(tmp_path / "src") | broken_files(tmp_path / "src")
    items = [(str(p), str(tmp_path / "out" / f"{n}.jpg")) for n, p in sorted(made.items())]
    pixels.shutdown_pool()
    try:
        images.render_batch.fn(items[:2], SETTINGS, workers=1)
        assert pixels._pool is None  # one worker renders in this process: no pool started
        results = images.render_batch.fn(items, SETTINGS, workers=2)
        pool = pixels._pool
        assert pool is not None and pool._max_workers == 2
        assert pixels.get_pool(2) is pool  # the batch's pool, kept for the next batch
        worker_pids = {pool.submit(os.getpid).result() for _ in range(8)}
        assert os.getpid() not in worker_pids and 1 <= len(worker_pids) <= 2
    finally:
        pixels.shutdown_pool()
    # One Arrow table for the batch (what Prefect holds), never a tuple or dict per image.
    assert isinstance(results, pa.Table) and results.schema == RENDERED
    assert results.num_rows == len(items)
    statuses = {
        Path(src).name: status
        for (src, _), status in zip(items, results.column("status").to_pylist(), strict=True)
    }
    assert statuses.pop("truncated.jpg") == statuses.pop("notes.jpg") == "corrupt"
    assert set(statuses.values()) == {"ok"}
    assert len(list((tmp_path / "out").iterdir())) == len(made) - 2


# ------------------------------------------------------------------ planning


def test_resolve_classes_picks_and_renames(tmp_path):
    for name in ("cat", "dog", ".hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "readme.txt").write_text("x")
    assert plan.resolve_classes(tmp_path, None) == {
        tmp_path / "cat": "cat",
        tmp_path / "dog": "dog",
    }
    assert plan.resolve_classes(tmp_path, ["dog=puppy"]) == {tmp_path / "dog": "puppy"}
    with pytest.raises(ConfigError, match="found: cat, dog"):
        plan.resolve_classes(tmp_path, ["bird"])
    with pytest.raises(ConfigError, match="not a valid name"):
        plan.resolve_classes(tmp_path, ["cat=../x"])
    with pytest.raises(ConfigError, match="does not exist"):
        plan.resolve_classes(tmp_path / "nope", None)


def test_split_is_seeded_proportional_and_per_image():
    shas = [f"{i:064x}" for i in range(3000)]
    spec = plan.SplitSpec(seed=1, val_fraction=0.2, test_fraction=0.1)
    splits = [plan.split_of(s, spec) for s in shas]
    assert abs(splits.count("val") / 3000 - 0.2) < 0.03
    assert abs(splits.count("test") / 3000 - 0.1) < 0.03
    assert splits == [plan.split_of(s, spec) for s in shas]
    other_seed = [plan.split_of(s, plan.SplitSpec(seed=2, val_fraction=0.2)) for s in shas]
    assert 0.2 < sum(a != b for a, b in zip(splits, other_seed, strict=True)) / 3000 < 0.6


def _files(*specs: tuple[str, str, str]) -> tuple[pd.DataFrame, pa.Table]:
    files = pd.DataFrame(
        {
            "source_path": [f"/src/{label}/{name}" for label, name, _ in specs],
            "label": [label for label, _, _ in specs],
            "size": 1,
            "mtime_ns": 1,
        }
    )
    return files, inspection_table({"sha256": sha} for _, _, sha in specs)


def test_plan_dedupes_conflicts_and_caps_deterministically():
    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    files, infos = _files(
        ("cat", "1.jpg", a), ("cat", "2.jpg", a), ("cat", "3.png", b),
        ("dog", "4.jpg", b), ("dog", "5.jpg", c), ("dog", "6.gif", d), ("dog", "7.txt", "e" * 64),
    )  # fmt: skip
    spec = plan.SplitSpec(seed=7, val_fraction=0.5, max_per_class=1)
    planned = plan.plan(files, infos, ["cat", "dog"], Path("/ds"), spec, ".jpg")
    rows = planned.to_dict("records")
    status = {Path(r["source_path"]).name: r["status"] for r in rows}
    assert status["1.jpg"] == "ok" and status["2.jpg"] == "duplicate"
    assert status["3.png"] == status["4.jpg"] == "conflict"
    assert sorted([status["5.jpg"], status["6.gif"]]) == ["capped", "ok"]
    assert status["7.txt"] == "unsupported"
    kept = next(r for r in rows if r["source_path"] == "/src/cat/1.jpg")
    assert kept["path"] == f"/ds/{kept['split']}/cat/{a}.jpg" and kept["label_index"] == 0
    assert plan.plan(files, infos, ["cat", "dog"], Path("/ds"), spec, ".jpg").equals(planned)


def test_sync_folders_makes_every_class_folder_and_removes_stale_outputs(tmp_path):
    source = tmp_path / "src.png"
    halves().save(source)
    dataset = tmp_path / "ds"
    stale = dataset / "val" / "old" / f"{'f' * 64}.jpg"
    assert pixels.render_file(str(source), str(stale), SETTINGS) == ("ok", None)
    keep = dataset / "train" / "cat" / f"{'a' * 64}.jpg"
    assert pixels.render_file(str(source), str(keep), SETTINGS) == ("ok", None)
    (dataset / "test" / "cat").mkdir(parents=True)
    aside = dataset / ".set-aside" / "r1"
    removed, moved = folders.sync_folders(
        dataset, ("train", "val"), ["cat", "dog"], {keep.as_posix()}, aside
    )
    assert (removed, moved) == (1, []) and keep.exists() and not stale.exists()
    made = sorted(p.relative_to(dataset).as_posix() for p in dataset.glob("*/*"))
    assert made == ["train/cat", "train/dog", "val/cat", "val/dog"]


def test_sync_folders_moves_files_it_did_not_write_aside(tmp_path):
    """A user's `train/bird/<sha256>.jpg` (hash-named, untagged) and notes are moved, not
    deleted; an output renamed to another hash is not ours at that name either."""
    dataset = tmp_path / "ds"
    users = dataset / "train" / "bird" / f"{'b' * 64}.jpg"
    users.parent.mkdir(parents=True)
    halves().save(users)
    notes = dataset / "val" / "cat" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine")
    ours = dataset / "val" / "cat" / f"{'c' * 64}.jpg"
    halves().save(tmp_path / "src.png")
    assert pixels.render_file(str(tmp_path / "src.png"), str(ours), SETTINGS) == ("ok", None)
    renamed = ours.rename(ours.with_name(f"{'d' * 64}.jpg"))
    aside = dataset / ".set-aside" / "r2"
    removed, moved = folders.sync_folders(dataset, ("train", "val"), ["cat"], set(), aside)
    assert removed == 0
    assert sorted(p.relative_to(aside).as_posix() for p in moved) == [
        f"train/bird/{'b' * 64}.jpg", f"val/cat/{'d' * 64}.jpg", "val/cat/notes.txt",
    ]  # fmt: skip
    assert (aside / "val" / "cat" / "notes.txt").read_text() == "mine"
    assert not users.exists() and not renamed.exists() and not (dataset / "train" / "bird").exists()
    assert not ours.exists()


def test_outputs_are_tagged_with_the_settings_that_made_them(tmp_path):
    halves((48, 40)).save(tmp_path / "src.jpg")
    for fmt in ("jpeg", "png"):
        settings = pixels.RenderSettings(image_size=32, image_format=fmt)
        out = tmp_path / f"{'e' * 64}{settings.suffix}"
        assert not pixels.made_by_us(tmp_path / "src.jpg")
        assert pixels.render_file(str(tmp_path / "src.jpg"), str(out), settings) == ("ok", None)
        assert pixels.made_with(out, settings) and pixels.made_by_us(out)
        assert not pixels.made_with(out, pixels.RenderSettings(image_size=24, image_format=fmt))
