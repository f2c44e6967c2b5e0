import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage.layout import Layout
from tasks.report.tasks import artifact_key, build_report, summary_markdown
from tests.tasks.report.run_data import EVIL, RUN, card_dict, dataset_rows, make_run, write

CHROMIUM = Path("/usr/bin/chromium")


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
    assert built.sections == ["scrape", "dataset", "health", "training", "predictions", "filters"]
    assert page.h2 == [
        "Summary", "Scrape", "Dataset", "Dataset health", "Training", "Predictions", "Filters"
    ]  # fmt: skip
    facts = built.facts
    assert ("pages", "2") in facts["Scrape"] and ("candidate URLs", "6") in facts["Scrape"]
    assert ("downloaded", "4") in facts["Scrape"] and ("failed", "1") in facts["Scrape"]
    assert ("images", "10") in facts["Dataset"] and ("failed", "1") in facts["Dataset"]
    assert ("skipped (expected)", "1") in facts["Scrape"]  # the duplicate: not a failure
    assert ("val images", "4") in facts["Dataset"] and ("train images", "6") in facts["Dataset"]
    assert ("best epoch", "2") in facts["Training"]
    assert ("best val accuracy", "0.750") in facts["Training"]
    # The confusion matrix is the trained model's (ResNet50's "alp" is ignored): 3 of 4 right.
    assert ("validation accuracy", "0.750") in facts["Training"]
    assert ("target hits", "3 of 4") in facts["Predictions"]
    assert ("preprocessing", "stretch/bilinear; raw") in facts["Predictions"]
    assert ("first conv layer", "conv_a") in facts["Filters"]
    body = page.body
    assert "3 of 4 images are forest." in body
    # Per-class table rows: class, images, precision, recall.
    assert "mountain | 2 | 1.000 | 0.500" in body and "forest | 2 | 0.667 | 1.000" in body
    assert "cannot identify image file" in body and "Model resnet50" in body
    # The duplicate URL is skipped by a rule, listed with its outcome, not among the failures.
    assert "duplicate | skipped | 1" in body and "http_error | failed | 1" in body
    assert "1 of 1 failed URLs" in body
    assert "evaluated_val_accuracy | 0.750 |" in body  # rounded; the card file keeps the digits


def test_the_summary_card_leads_both_reports_and_the_artifact(full_report):
    _, built, _ = full_report
    html_text = Path(built.html_path).read_text()
    card_at = html_text.index('<section id="summary" class="card">')
    assert html_text.index("<h1>") < card_at < html_text.index('<section id="scrape">')
    assert card_at < html_text.index(f"<p>Run {RUN}.</p>")  # before the intro, too
    summary = dict(built.summary)
    # The fake dataset has no test/: the held-out split is val/, 3 of 4 right.
    assert summary["accuracy (val/)"] == "75.0% of 4 images"
    assert summary["scraped URLs"] == "4 stored · 1 skipped · 1 failed"
    assert summary["prepared"] == "6 train · 4 val · 1 failed"
    assert summary["predicted"] == "4 images · 1 failed"
    next_step = "<strong>Next:</strong> 1 of 6 URLs failed (http_error 1): see Scrape</p>"
    assert next_step in html_text
    markdown = Path(built.markdown_path).read_text()
    assert markdown.startswith("# Fake run\n\n## Summary\n\n- **accuracy (val/)**: 75.0% of 4")
    assert "**Next:** 1 of 6 URLs failed" in markdown
    assert summary_markdown(built).startswith(markdown[: markdown.index("\nRun ")])


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
    write("dataset_manifest", dataset_rows(data_dir), data_dir)
    model_dir = Layout.ensure(Layout.at(data_dir).model_dir(RUN))
    (model_dir / "model_card.json").write_text(json.dumps(card_dict(data_dir, None)))
    preview = Image.new("RGB", (40, 20), (200, 10, 10))
    preview.save(model_dir / "augment_preview.png")
    built = build_report.fn({**runs(), "report": other}, str(data_dir), "Parts", sample=2)
    folder = Path(built.html_path).parent
    assert folder.name == other
    assert built.sections == ["dataset", "health", "training", "filters"]
    assert str(folder / "augment_samples.png") in built.plots
    with Image.open(folder / "augment_samples.png") as grid:  # enlarged 16x so pixels show
        assert grid.size == (640, 320) and grid.getpixel((300, 300)) == (200, 10, 10)
    page = Page(Path(built.html_path).read_text())
    assert "No confusion matrix" in page.body and "no trained model (best.keras)" in page.body


def test_artifact_keys_are_lowercase_letters_digits_and_dashes():
    assert artifact_key("report", "Run_2026.11.28--A") == "report-run-2026-11-28-a"
    assert artifact_key("report", RUN) == f"report-{RUN}"


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
