"""prepare_dataset end to end on a real (temporary) Prefect server, with images made here."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from typer.testing import CliRunner

from flows.cli.commands import app
from flows.prepare_dataset import prepare_dataset
from storage.errors import ConfigError
from storage.parquet import read_table, write_table
from tasks.prepare.columns import INSPECTION
from tests.tasks.prepare.test_render import (
    BLUE,
    RED,
    broken_files,
    close,
    every_mode,
    halves,
    pixel,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")

COLOURS = [(r, g, b) for r in (0, 120, 250) for g in (0, 120, 250) for b in (0, 250)]


def solid_images(folder: Path, count: int, start: int = 0) -> list[Path]:
    """`count` distinct small JPEGs (distinct bytes, so none is a duplicate)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        paths.append(folder / f"img{i:03d}.jpg")
        halves((24, 20), COLOURS[i % len(COLOURS)], COLOURS[(i * 7 + 3) % len(COLOURS)]).save(
            paths[-1], quality=90 - i % 7
        )
    return paths


def source_tree(root: Path) -> Path:
    made = every_mode(root / "cat") | broken_files(root / "cat")
    shutil.copy(made["rgb.jpg"], root / "cat" / "rgb-copy.jpg")  # duplicate within cat
    solid_images(root / "dog", 10)
    halves((20, 20), RED, RED).save(root / "dog" / "shared.png")
    shutil.copy(root / "dog" / "shared.png", root / "cat" / "shared.png")  # in both classes
    return root


def params(source: Path, data_dir: Path, **extra) -> dict:
    return {
        "source_dir": str(source),
        "data_dir": str(data_dir),
        "dataset": "pets",
        "image_size": 32,
        "val_fraction": 0.3,
        "seed": 3,
        "workers": 2,
        "batch_size": 8,
        **extra,
    }


def outputs(dataset_dir: Path) -> dict[str, int]:
    """Output file -> mtime_ns, for everything under the dataset folder's splits."""
    return {p.as_posix(): p.stat().st_mtime_ns for p in dataset_dir.glob("*/*/*") if p.is_file()}


def task_runs(state) -> list[tuple[str, str]]:
    """(task name, state name) of every task run of a flow run."""
    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=flow_filter)
    return sorted((r.name.rsplit("-", 1)[0], r.state_name) for r in runs)


def test_prepare_cleans_dedupes_splits_and_is_idempotent(tmp_path, data_dir):
    source = source_tree(tmp_path / "src")
    shared_sha = __import__("hashlib").sha256((source / "dog" / "img000.jpg").read_bytes())
    scrape_row = dict.fromkeys(read_table("scrape_manifest").columns.drop("run_date"))
    scrape_row.update(run_id="s1", page_url="http://pics.test/", url="http://pics.test/0.jpg")
    scrape_row.update(label="dog", status="ok", sha256=shared_sha.hexdigest())
    write_table("scrape_manifest", [scrape_row], run_id="s1", data_dir=data_dir)

    result = prepare_dataset(params=params(source, data_dir))

    assert result.class_names == ["cat", "dog"]
    rows = read_table("dataset_manifest", run_id=result.run_id)
    status = dict(zip(rows["source_path"].map(lambda p: Path(p).parent.name + "/" + Path(p).name),
                      rows["status"], strict=True))  # fmt: skip
    assert status.pop("cat/truncated.jpg") == status.pop("cat/notes.jpg") == "corrupt"
    assert status.pop("cat/shared.png") == status.pop("dog/shared.png") == "conflict"
    assert sorted([status.pop("cat/rgb.jpg"), status.pop("cat/rgb-copy.jpg")]) == [
        "duplicate",
        "ok",
    ]
    assert set(status.values()) == {"ok"} and len(status) == 20  # 10 more cats + 10 dogs
    assert result.skipped == {"conflict": 2, "corrupt": 2, "duplicate": 1}
    assert result.rendered == 21 and result.reused == 0

    ok = rows[rows["status"] == "ok"]
    dataset_dir = Path(result.dataset_dir)
    assert sorted(outputs(dataset_dir)) == sorted(ok["path"])
    for row in ok.itertuples():
        assert Path(row.path).is_absolute() and Path(row.source_path).is_absolute()
        assert Path(row.path).parent == dataset_dir / row.split / row.label
        assert row.label_index == ["cat", "dog"].index(row.label)
        with Image.open(row.path) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (32, 32))
    rotated = ok[ok["source_path"].str.endswith("rotated.JPEG")].iloc[0]
    assert close(pixel(rotated.path, (16, 3)), RED) and close(pixel(rotated.path, (16, 28)), BLUE)
    urls = dict(zip(ok["source_path"].map(lambda p: Path(p).name), ok["source_url"], strict=True))
    assert urls.pop("img000.jpg") == "http://pics.test/0.jpg"
    assert pd.isna(list(urls.values())).all()  # not from scrape_images: null

    counts = ok.groupby(["split", "label"]).size().to_dict()
    assert result.counts == {
        s: {c: counts.get((s, c), 0) for c in ("cat", "dog")} for s in ("train", "val")
    }
    assert any("in val/" in w for w in result.warnings)  # a few images per class: warned
    assert any("status conflict" in w for w in result.warnings)

    before = outputs(dataset_dir)
    state = prepare_dataset(params=params(source, data_dir), return_state=True)
    again = state.result()
    assert (again.rendered, again.reused, again.removed) == (0, 21, 0)
    assert outputs(dataset_dir) == before  # nothing rewritten
    assert set(task_runs(state)) == {("inspect-images", "Cached")}  # no file read, no render
    again_rows = read_table("dataset_manifest", run_id=again.run_id)
    assert again_rows.drop(columns="run_id").equals(rows.drop(columns="run_id"))

    new = solid_images(source / "dog", 6, start=10)
    third = prepare_dataset(params=params(source, data_dir))
    assert (third.rendered, third.reused) == (6, 21)
    after = outputs(dataset_dir)
    assert {p: after[p] for p in before} == before  # earlier images neither moved nor rewritten
    third_rows = read_table("dataset_manifest", run_id=third.run_id)
    assert set(third_rows[third_rows["status"] == "ok"]["path"]) >= set(ok["path"])
    assert len(after) == len(before) + len(new)

    import keras  # only here: the output is what Keras reads

    train = keras.utils.image_dataset_from_directory(
        dataset_dir / "train", image_size=(32, 32), batch_size=64, seed=1
    )
    val = keras.utils.image_dataset_from_directory(
        dataset_dir / "val", image_size=(32, 32), batch_size=64, seed=1
    )
    assert train.class_names == val.class_names == ["cat", "dog"]
    assert sum(int(x.shape[0]) for x, _ in train) + sum(int(x.shape[0]) for x, _ in val) == 27


def test_changed_settings_rerender_and_removed_sources_are_cleaned(tmp_path, data_dir):
    source = tmp_path / "src"
    solid_images(source / "a", 8)
    solid_images(source / "b", 8, start=8)
    first = prepare_dataset(params=params(source, data_dir, workers=1, test_fraction=0.2))
    assert set(first.counts) == {"train", "val", "test"}

    (source / "b" / "img008.jpg").unlink()
    second = prepare_dataset(
        params=params(source, data_dir, workers=1, image_size=24, image_format="png", seed=4)
    )
    assert (second.rendered, second.reused) == (15, 0)
    files = outputs(Path(second.dataset_dir))
    assert len(files) == 15 and all(p.endswith(".png") for p in files)
    assert second.removed == 16  # every old .jpg went, and test/ with them
    assert sorted(p.name for p in Path(second.dataset_dir).iterdir()) == [
        "dataset.json",
        "train",
        "val",
    ]
    with Image.open(next(iter(files))) as img:
        assert img.size == (24, 24)


def test_labels_rename_and_bad_configuration_fails_before_work(tmp_path, data_dir):
    source = tmp_path / "src"
    solid_images(source / "cats", 3)
    solid_images(source / "dogs", 3, start=3)
    result = prepare_dataset(params=params(source, data_dir, labels=["dogs=dog"], workers=1))
    assert result.class_names == ["dog"] and sum(result.counts["train"].values()) >= 1

    with pytest.raises(ConfigError, match="found: cats, dogs"):
        prepare_dataset(params=params(source, data_dir, labels=["birds"]))
    with pytest.raises(ConfigError, match="does not exist"):
        prepare_dataset(params=params(tmp_path / "missing", data_dir))
    with pytest.raises(ConfigError, match="overlap"):
        prepare_dataset(params=params(data_dir / "datasets", data_dir))


def test_cli_prepare_reads_raw_folders_under_the_data_root(data_dir):
    solid_images(data_dir / "raw" / "apple", 4)
    solid_images(data_dir / "raw" / "pear", 4, start=4)
    outcome = CliRunner().invoke(
        app, ["prepare", "--dataset", "fruit", "--image-size", "16", "--workers", "1"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert "rendered 8, reused 0" in outcome.output
    assert (data_dir / "datasets" / "fruit" / "train" / "apple").is_dir()


def test_no_inspection_table_outlives_the_run(tmp_path, data_dir):
    """The flow reads each inspect batch's table once; Prefect's in-memory result cache (a
    thousand records) would keep them all, every image's row, for the rest of the process."""
    source = tmp_path / "src"
    solid_images(source / "cats", 12)
    solid_images(source / "dogs", 12, start=12)
    for _ in range(2):  # the second run reads every batch back from Prefect's cache on disk
        result = prepare_dataset(params=params(source, data_dir, workers=1, batch_size=4))
        assert result.sources == 24
        gc.collect()
        kept = [
            o for o in gc.get_objects()
            if type(o).__name__ == "ResultRecord"
            and isinstance(getattr(o, "result", None), pa.Table)
            and o.result.schema.equals(INSPECTION)
        ]  # fmt: skip
        assert kept == []
