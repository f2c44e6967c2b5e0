"""prepare_dataset trusts, deletes and reports only what it should: the pool from `python -`
and scripts, splits left empty, re-runs on another day, files it did not write."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from PIL import Image
from prefect.settings import PREFECT_API_URL

from flows.prepare_dataset import prepare_dataset
from storage.errors import DatasetError
from storage.parquet import read_table, write_table
from tests.flows.test_prepare_dataset import outputs, params, solid_images
from tests.tasks.prepare.test_render import halves

pytestmark = pytest.mark.usefixtures("prefect_harness")
ROOT = Path(__file__).resolve().parents[2]

# The same text runs from stdin (`python - <params>`) and as a script file: no main guard.
SCRIPT = """
import json, sys
from flows.prepare_dataset import prepare_dataset
result = prepare_dataset(params=json.loads(sys.argv[1]))
print("RESULT " + result.model_dump_json())
"""


def two_classes(root: Path, each: int = 10) -> Path:
    solid_images(root / "cat", each)
    solid_images(root / "dog", each, start=each)
    return root


def run_python(args: list[str], stdin: str | None) -> dict:
    """Run the project's Python in a fresh process against this session's Prefect server."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.parametrize("how", ["stdin", "script without main guard"])
def test_the_process_pool_works_from_stdin_and_scripts(tmp_path, data_dir, how):
    source = two_classes(tmp_path / "src")
    args = json.dumps(params(source, data_dir, workers=2, runner="processes", run_id="p1"))
    if how == "stdin":
        result = run_python(["-", args], stdin=SCRIPT)
    else:
        script = tmp_path / "make_dataset.py"
        script.write_text(SCRIPT)
        result = run_python([str(script), args], stdin=None)
    assert result["skipped"] == {} and result["rendered"] == 20
    rows = read_table("dataset_manifest", run_id="p1")
    assert len(rows) == 20 and set(rows["status"]) == {"ok"}
    assert len(outputs(Path(result["dataset_dir"]))) == 20


def test_a_split_without_usable_images_fails_the_run(tmp_path, data_dir):
    source = tmp_path / "src"
    for label in ("cat", "dog"):
        (source / label).mkdir(parents=True)
        for n in range(2):
            (source / label / f"{n}.jpg").write_text(f"not a picture: {label} {n}")
    with pytest.raises(DatasetError, match=r"no usable image for train/ and val/.*corrupt 4"):
        prepare_dataset(params=params(source, data_dir, run_id="empty1"))
    rows = read_table("dataset_manifest", run_id="empty1")  # the statuses say why
    assert sorted(rows["status"]) == ["corrupt"] * 4


def test_a_rerun_on_another_day_replaces_the_older_partition(tmp_path, data_dir):
    source = two_classes(tmp_path / "src", each=5)
    first = prepare_dataset(params=params(source, data_dir, run_id="d1", workers=1))
    rows = read_table("dataset_manifest", run_id="d1").drop(columns="run_date")
    assert len(rows) == 10
    # day 1 as an earlier UTC day: move the run's rows to a fixed date
    old = write_table("dataset_manifest", rows, run_id="d1", run_date=date(2026, 1, 1))
    Path(first.manifest_path).unlink()
    assert len(read_table("dataset_manifest", run_id="d1")) == 10
    prepare_dataset(params=params(source, data_dir, run_id="d1", workers=1))
    again = read_table("dataset_manifest", run_id="d1")
    assert len(again) == 10 and "2026-01-01" not in set(again["run_date"])
    assert not old.exists()


def test_a_file_at_an_output_path_is_reused_only_when_this_run_made_it(tmp_path, data_dir):
    """An original 48x40 placed at its `<sha256>.jpg` output path is re-rendered to 32x32; the
    original is moved aside, not lost."""
    source = tmp_path / "src"
    solid_images(source / "dog", 8)
    solid_images(source / "cat", 7, start=8)
    halves((48, 40)).save(source / "cat" / "big.jpg")
    first = prepare_dataset(params=params(source, data_dir, workers=1))
    rows = read_table("dataset_manifest", run_id=first.run_id)
    big = rows[rows["source_path"].str.endswith("big.jpg")].iloc[0]
    output = Path(big.path)
    sha = hashlib.sha256((source / "cat" / "big.jpg").read_bytes()).hexdigest()
    assert output.name == f"{sha}.jpg"
    output.write_bytes((source / "cat" / "big.jpg").read_bytes())  # the original, 48x40

    second = prepare_dataset(params=params(source, data_dir, workers=1))
    assert (second.rendered, second.reused) == (1, first.rendered - 1)
    with Image.open(output) as img:
        assert img.size == (32, 32)
    moved = [Path(p) for p in second.set_aside]
    assert [p.name for p in moved] == [output.name] and moved[0].is_file()
    with Image.open(moved[0]) as img:
        assert img.size == (48, 40)
    assert any("did not write" in w and output.name in w for w in second.warnings)


def test_the_folder_sync_never_deletes_a_file_pixelpipe_did_not_write(tmp_path, data_dir):
    source = two_classes(tmp_path / "src", each=6)
    first = prepare_dataset(params=params(source, data_dir, workers=1))
    dataset_dir = Path(first.dataset_dir)
    users = dataset_dir / "train" / "bird" / f"{'b' * 64}.jpg"  # hash-named, not in any run
    users.parent.mkdir()
    halves((40, 40)).save(users)
    mine = users.read_bytes()
    (source / "dog" / "img006.jpg").unlink()  # one output of ours is no longer planned

    second = prepare_dataset(params=params(source, data_dir, workers=1))
    assert second.removed == 1 and not users.exists()
    moved = [Path(p) for p in second.set_aside]
    assert len(moved) == 1 and moved[0].read_bytes() == mine
    assert moved[0].relative_to(dataset_dir).as_posix().endswith(f"train/bird/{users.name}")
    assert not (dataset_dir / "train" / "bird").exists()  # Keras sees only the real classes
