"""Near-duplicates on generated pictures: copies stay in one split, different pictures apart."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.demo.gallery import draw_forest, draw_mountain
from tasks.prepare import plan
from tasks.prepare.columns import inspection_table
from tasks.prepare.near_duplicates import (
    QUERY_CHUNK,
    close_pairs,
    group_labels,
    informative,
    to_ints,
)
from tasks.prepare.render import inspect_file


def picture(seed: int) -> Image.Image:
    """A generated 160x120 mountain or forest scene (the demo's), different for every seed."""
    rng = np.random.default_rng(seed)
    return (draw_mountain if seed % 2 else draw_forest)(rng)


def copies(img: Image.Image) -> dict[str, Image.Image]:
    """What the web publishes of one photo: a re-encode, a smaller size, a 5% crop."""
    w, h = img.size
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=60)
    cw, ch = round(w * 0.95), round(h * 0.95)
    left, top = (w - cw) // 2, (h - ch) // 2
    return {
        "reencode": Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"),
        "resize": img.resize((round(w * 0.8), round(h * 0.8)), Image.Resampling.LANCZOS),
        "crop": img.crop((left, top, left + cw, top + ch)),
    }


def write_source(folder: Path, images: dict[str, Image.Image]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        img.save(folder / f"{name}.jpg", quality=92)


def planned(root: Path, spec: plan.SplitSpec) -> dict[str, dict]:
    """plan() over root/<class>/ with real inspect_file infos; 'class/name' -> row."""
    classes = plan.resolve_classes(root, None)
    files = plan.list_source_files(classes)
    inspected = inspection_table(inspect_file(p) for p in files["source_path"])
    names = sorted(set(classes.values()))
    rows = plan.plan(files, inspected, names, root.parent / "out", spec, ".jpg")
    rows["phash"] = [f"{h:016x}" if pd.notna(h) else None for h in rows["phash"]]
    rows = rows.astype(object).where(rows.notna(), None)
    return {
        Path(r["source_path"]).parent.name + "/" + Path(r["source_path"]).stem: r
        for r in rows.to_dict("records")
    }


def test_copies_of_one_picture_always_share_a_split_and_others_stay_apart(tmp_path):
    for seed in range(24):  # pictures and split seeds vary together
        root = tmp_path / f"s{seed}" / "src"
        original = picture(seed)
        others = {f"other{k}": picture(1000 + 10 * seed + k) for k in range(4)}
        write_source(root / "scenes", {"original": original} | copies(original) | others)
        spec = plan.SplitSpec(seed=seed, val_fraction=0.5)
        rows = planned(root, spec)
        family = [rows[f"scenes/{n}"] for n in ("original", "reencode", "resize", "crop")]
        assert all(r["status"] == "ok" for r in rows.values())
        assert len({r["near_duplicate_group"] for r in family}) == 1, seed
        assert family[0]["near_duplicate_group"] == min(r["sha256"] for r in family)
        assert len({r["split"] for r in family}) == 1, seed
        # Different pictures are not merged: each other picture is its own group.
        for k in range(4):
            other = rows[f"scenes/other{k}"]
            assert other["near_duplicate_group"] == other["sha256"]
        assert all(informative(r["phash"]) for r in rows.values())


def test_a_near_duplicate_in_another_class_is_a_conflict_and_the_option_turns_it_off(tmp_path):
    root = tmp_path / "src"
    original = picture(7)
    write_source(root / "cats", {"a": original, "b": picture(8), "c": picture(9)})
    write_source(root / "dogs", {"a-small": copies(original)["resize"], "d": picture(10)})
    rows = planned(root, plan.SplitSpec())
    assert rows["cats/a"]["status"] == rows["dogs/a-small"]["status"] == "conflict"
    assert "near-duplicate of" in rows["cats/a"]["error"] and "dogs" in rows["cats/a"]["error"]
    assert rows["cats/a"]["split"] is None and rows["cats/b"]["status"] == "ok"
    off = planned(root, plan.SplitSpec(near_duplicate_distance=None))
    assert {r["status"] for r in off.values()} == {"ok"}
    assert all(r["near_duplicate_group"] == r["sha256"] for r in off.values())
    # Off, the split is the one every image had before grouping: by its own content hash.
    assert all(r["split"] == plan.split_of(r["sha256"], plan.SplitSpec()) for r in off.values())


def test_flat_images_and_other_colours_join_no_group(tmp_path):
    root = tmp_path / "src"
    layout = np.asarray(picture(3).convert("L"), dtype=np.uint8)
    red = Image.fromarray(np.stack([layout, layout // 4, layout // 4], axis=-1))
    blue = Image.fromarray(np.stack([layout // 4, layout // 4, layout], axis=-1))
    write_source(root / "red", {"shape": red, "blank": Image.new("RGB", (64, 64), (40, 40, 40))})
    write_source(root / "blue", {"shape": blue, "blank": Image.new("RGB", (64, 64), (50, 50, 50))})
    rows = planned(root, plan.SplitSpec())
    # One gray layout (hashes within the distance)...
    assert (
        bin(int(rows["red/shape"]["phash"], 16) ^ int(rows["blue/shape"]["phash"], 16)).count("1")
        <= plan.SplitSpec().near_duplicate_distance
    )
    assert {r["status"] for r in rows.values()} == {"ok"}  # ...but other colours; blanks skip
    assert not informative(rows["red/blank"]["phash"])
    assert rows["red/blank"]["contrast"] < 1 and rows["red/shape"]["contrast"] > 10


@pytest.mark.parametrize("distance", [0, 3, 8, 10, 13])
def test_close_pairs_equal_comparing_every_pair(distance):
    rng = np.random.default_rng(distance)
    base = rng.integers(0, 2**64 - 1, 1500, dtype=np.uint64, endpoint=True)
    planted = base[:300].copy()
    for _ in range(distance + 2):  # copies around the threshold, on both sides of it
        bits = rng.integers(0, 64, 300).astype(np.uint64)
        planted ^= np.where(rng.random(300) < 0.5, np.uint64(1) << bits, np.uint64(0))
    hashes = np.concatenate([base, planted])
    counts = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    i, j = np.nonzero(np.triu(counts <= distance, 1))
    got = close_pairs(hashes, distance)
    assert sorted(map(tuple, got.tolist())) == sorted(zip(i.tolist(), j.tolist(), strict=True))
    assert len(got) >= 1
    labels = group_labels(hashes, distance)
    assert all(labels[a] == labels[b] for a, b in got)


def test_hex_hashes_round_trip():
    assert to_ints(["ffffffffffffffff", "0000000000000001"]).tolist() == [2**64 - 1, 1]


def test_close_pairs_finds_every_planted_pair_across_query_chunks():
    """More hashes than one chunk of queries (QUERY_CHUNK): a copy within 3 bits of each of
    20,000 random hashes is found, wherever the chunk boundaries fall, and nothing else."""
    rng = np.random.default_rng(5)
    base = rng.integers(0, 2**64 - 1, 20_000, dtype=np.uint64, endpoint=True)
    flips = rng.integers(0, 64, (20_000, 3)).astype(np.uint64)
    planted = base ^ (np.uint64(1) << flips[:, 0]) ^ (np.uint64(1) << flips[:, 1])
    hashes = np.concatenate([base, planted])
    assert len(hashes) > 2 * QUERY_CHUNK
    got = close_pairs(hashes, 3)
    assert got.tolist() == [[k, 20_000 + k] for k in range(20_000)]
