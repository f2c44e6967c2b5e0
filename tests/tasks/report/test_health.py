"""Dataset health: prepare a folder with planted problems, then read them back in the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from flows.prepare_dataset import prepare_dataset
from storage.parquet import read_table
from tasks.demo.gallery import draw_forest, draw_mountain
from tasks.report.health import checks, health_rows, near_duplicate_groups
from tasks.report.tasks import build_report

RUN = "20261130-010000-health"


def planted_source(root: Path) -> dict[str, Path]:
    """6 scenes per class, plus: a blank picture in cats, a smaller copy of cat 0 in dogs
    (cross-class near-duplicate), a re-encode of cat 1 in cats, and a dark picture."""
    made: dict[str, Path] = {}
    for label, draw, offset in (("cats", draw_mountain, 0), ("dogs", draw_forest, 100)):
        (root / label).mkdir(parents=True)
        for n in range(6):
            made[f"{label}/{n}"] = root / label / f"{n}.jpg"
            draw(np.random.default_rng(offset + n)).save(made[f"{label}/{n}"], quality=92)
    made["blank"] = root / "cats" / "blank.png"
    Image.new("RGB", (160, 120), (128, 128, 128)).save(made["blank"])
    with Image.open(made["cats/0"]) as img:
        made["copy"] = root / "dogs" / "copy-of-cat0.jpg"
        img.resize((128, 96), Image.Resampling.LANCZOS).save(made["copy"], quality=80)
    with Image.open(made["cats/1"]) as img:
        made["reencode"] = root / "cats" / "reencode-of-cat1.jpg"
        img.save(made["reencode"], quality=60)
        made["dark"] = root / "cats" / "dark.jpg"
        Image.eval(img, lambda v: v // 4).save(made["dark"], quality=92)
    return made


def test_health_lists_the_planted_blank_image_and_cross_class_near_duplicate(
    prefect_harness, tmp_path, data_dir
):
    made = planted_source(tmp_path / "src")
    params = {"source_dir": str(tmp_path / "src"), "data_dir": str(data_dir), "run_id": RUN}
    prepare_dataset(params=params | {"dataset": "pets", "image_size": 64, "workers": 1})
    manifest = read_table("dataset_manifest", data_dir=data_dir, run_id=RUN)
    found = {c.name: set(c.rows["source_path"]) for c in checks(manifest, 224)}
    posix = {k: p.absolute().as_posix() for k, p in made.items()}
    assert found["cross-class conflict (near)"] == {posix["cats/0"], posix["copy"]}
    assert found["low variance (blank)"] == {posix["blank"]}
    assert posix["dark"] in found["dark"] and posix["blank"] not in found["dark"]
    assert found["small"] == {posix["copy"]}  # 96 px short side; training 224: under 112
    groups = near_duplicate_groups(manifest)
    within = [g for g in groups if set(g["source_path"]) == {posix["cats/1"], posix["reencode"]}]
    assert len(within) == 1 and within[0]["split"].nunique() == 1

    built = build_report.fn(dict.fromkeys(["report", "scrape", "dataset", "train", "predict"], RUN),
                            str(data_dir), "Health")  # fmt: skip
    assert "health" in built.sections
    facts = dict(built.facts["Dataset health"])
    assert facts["cross-class conflict (near)"] == "2" and facts["low variance (blank)"] == "1"
    assert int(facts["near-duplicate groups"]) >= 2
    html = Path(built.html_path).read_text()
    for key in ("blank", "copy", "cats/0"):  # example rows name the file
        assert posix[key] in html, key
    assert 'alt="reencode-of-cat1.jpg"' in html  # a within-class group: thumbnails only
    assert html.count("<img") >= 4  # the groups' thumbnails side by side, and the examples
    rows = {r["check"]: r for r in built.health_rows}
    assert rows["low variance (blank)"]["count"] == 1
    assert posix["blank"] in rows["low variance (blank)"]["examples"]
    assert rows["class balance"]["examples"] == "cats 8, dogs 6"


def test_a_clean_frame_has_no_findings():
    frame = pd.DataFrame(
        {
            "source_path": ["/a.jpg", "/b.jpg"],
            "label": ["x", "y"],
            "split": ["train", "val"],
            "status": ["ok", "ok"],
            "error": [None, None],
            "width": [300, 300],
            "height": [300, 300],
            "brightness": [120.0, 130.0],
            "contrast": [40.0, 50.0],
            "near_duplicate_group": ["a", "b"],
        }
    )
    assert all(c.rows.empty for c in checks(frame, 224)) and near_duplicate_groups(frame) == []
    assert [r["count"] for r in health_rows(frame, 224)] == [0] * 8 + [2]
