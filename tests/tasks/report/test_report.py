import base64
import importlib.util
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from storage.layout import Layout
from storage.parquet import write_table
from storage.schemas import TABLES
from tasks.report import stats as S
from tasks.report.document import Section, Table, Text, md_escape, render_html, render_markdown
from tasks.report.filters import classic_maps, learned_filters
from tasks.report.tasks import artifact_key, build_report, summary_markdown

RUN = "20261128-120000-abc123"
TRAINED = "small_cnn"
LABELS = ("mountain", "forest")
EVIL = "<script>alert(1)</script>"
CHROMIUM = Path("/usr/bin/chromium")


def _image(path: Path, colour: tuple[int, int, int], seed: int) -> str:
    """A 32x32 PNG: a solid colour with a noisy diagonal stripe (so kernels have edges)."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((32, 32, 3), np.uint8)
    pixels[:] = colour
    for i in range(32):
        pixels[i, max(0, i - 3) : i + 3] = rng.integers(0, 255, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


def _scrape_rows(root: Path) -> list[dict]:
    base = {
        "run_id": RUN,
        "http_status": 200,
        "error": None,
        "sha256": None,
        "width": 32,
        "height": 32,
        "format": "PNG",
        "bytes": 100,
        "content_type": "image/png",
        "found_in": "img",
        "fetched_at": None,
        "elapsed_s": 0.1,
    }
    rows = []
    for i, label in enumerate(LABELS):
        for j in range(2):
            path = _image(root / "raw" / label / f"{j}.png", (40 + 150 * i, 120, 60), 10 * i + j)
            rows.append(
                {
                    **base,
                    "page_url": f"http://pages.test/{label}.html",
                    "url": f"http://img.test/{label}/{j}.png",
                    "label": label,
                    "status": "ok",
                    "path": path,
                }
            )
    bad = {"label": "forest", "page_url": "http://pages.test/forest.html", "path": None}
    rows.append({**base, **bad, "url": "http://img.test/gone.png", "status": "http_error"})
    rows[-1].update(http_status=404, error=f"404 Not Found {EVIL}")
    rows.append({**base, **bad, "url": "http://img.test/forest/0-copy.png", "status": "duplicate"})
    return rows


def _dataset_rows(root: Path) -> list[dict]:
    """3 train + 2 val images per class, and one corrupt source file."""
    rows = []
    for index, label in enumerate(LABELS):
        for n, split in enumerate(["train"] * 3 + ["val"] * 2):
            out = root / "datasets" / "fake" / split / label / f"{n}.png"
            rows.append(
                {
                    "run_id": RUN,
                    "dataset": "fake",
                    "path": _image(out, (40 + 150 * index, 120, 60), 100 + 10 * index + n),
                    "label": label,
                    "label_index": index,
                    "split": split,
                    "sha256": f"{index}{n}",
                    "source_url": None,
                    "source_path": f"/raw/{label}/{n}.png",
                    "status": "ok",
                    "error": None,
                    "width": 32,
                    "height": 32,
                }
            )
    rows.append(
        {
            **rows[0],
            "path": None,
            "label_index": None,
            "split": None,
            "source_path": "/raw/forest/broken.jpg",
            "label": "forest",
            "status": "corrupt",
            "error": "cannot identify image file",
        }
    )
    return rows


def _val_images(root: Path) -> dict[str, list[str]]:
    folder = root / "datasets" / "fake" / "val"
    return {label: [str(folder / label / f"{n}.png") for n in (3, 4)] for label in LABELS}


def _prediction_rows(root: Path) -> list[dict]:
    """The trained model: both forests right, one mountain called forest (3 of 4 right);
    forest at rank 1 is the target. ResNet50 also predicted two images (ImageNet labels)."""
    val = _val_images(root)
    top1 = {
        val["mountain"][0]: ("mountain", 0.9),
        val["mountain"][1]: ("forest", 0.6),
        val["forest"][0]: ("forest", 0.8),
        val["forest"][1]: ("forest", 0.7),
    }
    base = {"run_id": RUN, "error": None, "status": "ok"}
    rows = []
    for image, (label, p) in top1.items():
        other = "mountain" if label == "forest" else "forest"
        for rank, (name, prob) in enumerate([(label, p), (other, 1 - p)], start=1):
            hit = name == "forest" and rank == 1
            rows.append(
                {
                    **base,
                    "model": TRAINED,
                    "image": image,
                    "rank": rank,
                    "label": name,
                    "label_index": LABELS.index(name),
                    "probability": prob,
                    "is_target": hit,
                    "target_probability": p if label == "forest" else 1 - p,
                    "model_run": RUN,
                }
            )
    broken = {**rows[0], "image": "/nowhere/broken.png", "rank": None, "label": None}
    broken.update(label_index=None, probability=None, is_target=None, target_probability=None)
    rows.append({**broken, "status": "corrupt", "error": "cannot identify image file"})
    for image in val["mountain"]:
        rows.append({**rows[0], "model": "resnet50", "image": image, "label": "alp"})
        rows[-1]["model_run"] = None  # an ImageNet backbone has no train run
        rows[-1].update(label_index=970, probability=0.5, is_target=False, target_probability=0.0)
    return rows


def _history(root: Path) -> tuple[list[dict], list[dict]]:
    model_dir = Layout.at(root).model_dir(RUN)
    epochs = [
        (1, 0.9, 0.55, 0.8, 0.50, False),
        (2, 0.6, 0.70, 0.5, 0.75, True),
        (3, 0.4, 0.85, 0.6, 0.70, False),
    ]
    epoch_rows = [
        {
            "run_id": RUN,
            "model": TRAINED,
            "epoch": e,
            "loss": loss,
            "accuracy": acc,
            "val_loss": vl,
            "val_accuracy": va,
            "is_best": best,
            "checkpoint_path": str(model_dir / "best.keras"),
            "seconds": 1.5,
            "learning_rate": 0.001,
            "finished_at": None,
        }
        for e, loss, acc, vl, va, best in epochs
    ]
    batch_rows = [
        {
            "run_id": RUN,
            "model": TRAINED,
            "epoch": e,
            "batch": b,
            "loss": 1.0 / (e + b),
            "accuracy": 0.4 + 0.1 * e + 0.02 * b,
        }
        for e in (1, 2, 3)
        for b in range(4)
    ]
    return epoch_rows, batch_rows


def _card(root: Path, augmentation: dict | None) -> dict:
    return {
        "run_id": RUN,
        "model": TRAINED,
        "class_names": list(LABELS),
        "image_size": [32, 32],
        "label_mode": "categorical",
        "num_classes": 2,
        "best_epoch": 2,
        "best_val_accuracy": 0.75,
        "best_val_loss": 0.5,
        "dataset_dir": str(root / "datasets" / "fake"),
        "params": {"epochs": 3, "batch_size": 4, "augmentation": augmentation},
        "versions": {"keras": "3", "tensorflow": "2.21"},
    }


def _save_tiny_model(path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv_a"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.save(path)


def write(table: str, rows: list[dict], root: Path) -> None:
    """write_table, with optional columns the report does not read (other stages add some)
    filled with nulls."""
    optional = [f.name for f in TABLES[table] if f.nullable]
    rows = [{**dict.fromkeys(optional), **row} for row in rows]
    write_table(table, rows, run_id=RUN, data_dir=root)


def make_run(root: Path, *, model: bool = False, augmentation: dict | None = None) -> str:
    """A complete fake run written through storage/: every table, a model card, images."""
    write("scrape_manifest", _scrape_rows(root), root)
    write("dataset_manifest", _dataset_rows(root), root)
    epoch_rows, batch_rows = _history(root)
    write("epoch_history", epoch_rows, root)
    write("batch_history", batch_rows, root)
    write("predictions", _prediction_rows(root), root)
    model_dir = Layout.ensure(Layout.at(root).model_dir(RUN))
    (model_dir / "model_card.json").write_text(json.dumps(_card(root, augmentation)))
    if model:
        _save_tiny_model(model_dir / "best.keras")
    return RUN


class Page(HTMLParser):
    """Headings, image sources and visible text of a report page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self.scripts = 0
        self._tag = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        self.scripts += tag == "script"
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        self._tag = None

    def handle_data(self, data):
        if self._tag == "h2":
            self.h2.append(data)
        if data.strip():
            self.text.append(data.strip())

    @property
    def body(self) -> str:
        return " | ".join(self.text)


def decode(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,"), src[:40]
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    image.load()
    return image


def runs() -> dict[str, str]:
    return dict.fromkeys(["report", "scrape", "dataset", "train", "predict"], RUN)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """One full report (tiny Keras model included), shared by the checks below."""
    root = tmp_path_factory.mktemp("data")
    make_run(root, model=True, augmentation={"horizontal_flip": True})
    built = build_report.fn(runs(), str(root), "Fake run", sample=3, max_filters=4)
    return root, built, Page(Path(built.html_path).read_text())


def test_report_has_every_section_with_the_right_numbers(full_report):
    _, built, page = full_report
    assert built.sections == ["scrape", "dataset", "training", "predictions", "filters"]
    assert page.h2 == ["Scrape", "Dataset", "Training", "Predictions", "Filters"]
    facts = built.facts
    assert ("pages", "2") in facts["Scrape"] and ("candidate URLs", "6") in facts["Scrape"]
    assert ("downloaded", "4") in facts["Scrape"] and ("failed", "1") in facts["Scrape"]
    assert ("images", "10") in facts["Dataset"] and ("skipped files", "1") in facts["Dataset"]
    assert ("val images", "4") in facts["Dataset"] and ("train images", "6") in facts["Dataset"]
    assert ("best epoch", "2") in facts["Training"]
    assert ("best val accuracy", "0.750") in facts["Training"]
    # The confusion matrix is the trained model's (ResNet50's "alp" is ignored): 3 of 4 right.
    assert ("validation accuracy", "0.750") in facts["Training"]
    assert ("target hits", "3 of 4") in facts["Predictions"]
    assert ("first conv layer", "conv_a") in facts["Filters"]
    body = page.body
    assert "3 of 4 images are forest." in body
    # Per-class table rows: class, images, precision, recall.
    assert "mountain | 2 | 1.000 | 0.500" in body and "forest | 2 | 0.667 | 1.000" in body
    assert "cannot identify image file" in body and "Model resnet50" in body


def test_untrusted_text_is_escaped_and_the_page_is_self_contained(full_report):
    _, built, page = full_report
    text = Path(built.html_path).read_text()
    assert EVIL not in text and "&lt;script&gt;" in text
    assert page.scripts == 0
    assert EVIL in page.body  # shown as text, not run
    assert 'name="viewport"' in text and "@media (max-width" in text
    assert all(src.startswith("data:") for src in page.images)


def test_embedded_images_decode(full_report):
    _, built, page = full_report
    # Plots: splits, curves, batches, confusion, 3 filter grids, scrape samples; thumbnails.
    assert len(page.images) >= 10
    sizes = [decode(src).size for src in page.images]
    assert all(w >= 16 and h >= 16 for w, h in sizes)
    for plot in built.plots:
        assert Path(plot).parent == Path(built.html_path).parent
        with Image.open(plot) as image:
            assert image.format == "PNG"


def test_augmented_samples_come_from_the_train_stage_task(full_report):
    _, built, page = full_report
    grid = Path(built.html_path).parent / "augment_samples.png"
    if importlib.util.find_spec("tasks.train.augment") is None:
        assert "Augmented samples need tasks.augment" in page.body
    else:
        assert grid.is_file() and str(grid) in built.plots
        assert "Augmented training samples." in page.body


def test_markdown_report_points_at_pngs_beside_it(full_report):
    _, built, _ = full_report
    md_path = Path(built.markdown_path)
    text = md_path.read_text()
    for heading in ["## Scrape", "## Dataset", "## Training", "## Predictions", "## Filters"]:
        assert heading in text
    links = [line.split("](", 1)[1].split(")", 1)[0] for line in text.split("![")[1:]]
    assert links and all((md_path.parent / link).is_file() for link in links)
    assert EVIL not in text
    summary = summary_markdown(built)
    assert "**downloaded**: 4" in summary and built.html_path in summary


def test_empty_run_says_so(data_dir):
    built = build_report.fn(runs(), str(data_dir), "Nothing", sample=3)
    assert built.sections == [] and built.plots == []
    page = Page(Path(built.html_path).read_text())
    assert page.h2 == [] and f"Nothing has been recorded for run {RUN} yet" in page.body
    assert "Nothing has been recorded" in Path(built.markdown_path).read_text()


def test_a_stage_prefers_its_own_run_id_and_a_left_over_preview_is_used(data_dir):
    other = "20261127-000000-ffffff"
    write("dataset_manifest", _dataset_rows(data_dir), data_dir)
    model_dir = Layout.ensure(Layout.at(data_dir).model_dir(RUN))
    (model_dir / "model_card.json").write_text(json.dumps(_card(data_dir, None)))
    preview = Image.new("RGB", (40, 20), (200, 10, 10))
    preview.save(model_dir / "augment_preview.png")
    built = build_report.fn({**runs(), "report": other}, str(data_dir), "Parts", sample=2)
    folder = Path(built.html_path).parent
    assert folder.name == other
    assert built.sections == ["dataset", "training", "filters"]
    assert str(folder / "augment_samples.png") in built.plots
    with Image.open(folder / "augment_samples.png") as grid:  # enlarged 16x so pixels show
        assert grid.size == (640, 320) and grid.getpixel((300, 300)) == (200, 10, 10)
    page = Page(Path(built.html_path).read_text())
    assert "No confusion matrix" in page.body and "no trained model (best.keras)" in page.body


def test_artifact_keys_are_lowercase_letters_digits_and_dashes():
    assert artifact_key("report", "Run_2026.11.28--A") == "report-run-2026-11-28-a"
    assert artifact_key("report", RUN) == f"report-{RUN}"


def test_confusion_precision_recall():
    pairs = pd.DataFrame(
        {"true": ["a", "a", "b", "b", "b"], "predicted": ["a", "b", "b", "b", "c"]}
    )
    cm = S.confusion(pairs, ["b", "a"])
    assert cm.true_labels == ["b", "a"] and cm.pred_labels == ["b", "a", "c"]
    assert cm.matrix.tolist() == [[2, 0, 1], [1, 1, 0]]
    assert cm.accuracy == pytest.approx(3 / 5)
    per = {r["label"]: r for r in cm.per_class()}
    assert per["b"]["precision"] == pytest.approx(2 / 3) and per["b"]["recall"] == pytest.approx(
        2 / 3
    )
    assert per["a"]["precision"] == 1.0 and per["a"]["recall"] == 0.5


def test_latest_epoch_record_wins_and_best_falls_back_to_lowest_val_loss():
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 2],
            "val_loss": [0.9, 0.8, 0.4],
            "is_best": [False, False, False],
            "finished_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True),
        }
    )
    epochs = S.latest_epochs(history)
    assert epochs["val_loss"].tolist() == [0.9, 0.4]
    assert int(S.best_epoch(epochs)["epoch"]) == 2


def test_spread_sample_is_deterministic_and_spread():
    items = [f"{i:02d}" for i in range(10)]
    assert S.spread_sample(list(reversed(items)), 3) == ["00", "04", "09"]
    assert S.spread_sample(items[:2], 5) == ["00", "01"]


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


def test_markdown_escaping_keeps_tables_intact(tmp_path):
    assert md_escape("a|b <i>x</i>\nc") == "a\\|b \\<i\\>x\\</i\\> c"
    section = Section("s", "S", [Table(["k"], [["x|y"]]), Text("*bold*")])
    text = render_markdown("T", [], [section], tmp_path)
    assert "| x\\|y |" in text and "\\*bold\\*" in text
    assert "<i>" not in render_html("T <i>", ["<b>"], [section])


def _blank(png: Path) -> bool:
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    return pixels.std() < 5 or (pixels < 200).mean() < 0.01


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium_at_phone_width(full_report, tmp_path):
    _, built, _ = full_report
    shot = tmp_path / "shot.png"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=390,2000",
        Path(built.html_path).as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (390, 2000)
    assert not _blank(shot)
    # A page that renders nothing is blank by the same measure.
    Image.new("RGB", (390, 2000), "white").save(tmp_path / "white.png")
    assert _blank(tmp_path / "white.png")
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
