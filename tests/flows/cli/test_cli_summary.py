"""Every command ends with a summary that says why items were not ok and what fixes it, and
prints little else unless -v: the real command, in a subprocess, on the test Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli.output import SCRAPE_FIXES, status_lines
from tasks.scrape.manifest import status_reasons
from tests.http_server import SiteServer

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def pixelpipe(prefect_harness, data_dir):
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user has it (conftest sets it for the tests)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flows.cli", *args], env=env, cwd=REPO,
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip

    return run


def test_a_blocked_page_says_why_and_which_flag_fixes_it(pixelpipe):
    with SiteServer() as site:
        done = pixelpipe("scrape", "--pages", site.url("index.html"), "--label", "sun")
        verbose = pixelpipe("-v", "scrape", "--pages", site.url("index.html"), "--label", "sun")
        quiet = pixelpipe("-q", "scrape", "--pages", site.url("index.html"), "--label", "sun")
    assert done.returncode == 0, done.stderr
    # The host once, the flag once: the row in the table also names the setting.
    fix = "pass --allow-private-networks to allow it"
    line = f"  blocked 1: 127.0.0.1 is a loopback address — {fix}"
    assert line in done.stdout.splitlines(), done.stdout
    # Quiet by default: the run's first lines (name, UI link), no per-task lines.
    assert "Finished in state" not in done.stderr
    assert "Beginning flow run" in done.stderr
    assert "Finished in state Completed()" in verbose.stderr
    assert quiet.stderr == "" and line in quiet.stdout.splitlines()


def test_reasons_are_grouped_most_common_first():
    rows = [("ok", None), ("too_small", "10x10 < 32"), ("too_small", "10x10 < 32"),
            ("too_small", "8x8 < 32"), ("timeout", float("nan"))]  # fmt: skip
    reasons = status_reasons(rows)
    assert reasons == {
        "too_small": [("10x10 < 32", 2), ("8x8 < 32", 1)], "timeout": [("", 1)]
    }  # fmt: skip
    counts = {"ok": 1, "too_small": 3, "timeout": 1}
    assert status_lines(counts, reasons, SCRAPE_FIXES) == [
        "  too_small 3: 10x10 < 32 (2); 8x8 < 32 (1) — --min-size sets the smallest side kept",
        "  timeout 1 — --timeout (per request) or --deadline (per image) give more time",
    ]


def test_prepare_says_what_it_left_out_and_which_option_decides(prefect_harness, data_dir):
    from typer.testing import CliRunner

    from flows.cli.commands import app
    from tests.flows.test_prepare_dataset import solid_images

    solid_images(data_dir / "raw" / "apple", 5)
    solid_images(data_dir / "raw" / "pear", 5, start=5)
    args = ["prepare", "--dataset", "fruit", "--image-size", "16", "--workers", "1"]
    outcome = CliRunner().invoke(app, [*args, "--max-per-class", "3"])
    assert outcome.exit_code == 0, outcome.output
    assert "rendered 6, reused 0, left out 4" in outcome.output
    assert "  capped 4 — --max-per-class raises the cap" in outcome.output.splitlines()


def test_the_demo_prints_a_handful_of_lines(pixelpipe, tmp_path):
    """92 lines before (a line per task, TensorFlow's start-up, Keras's "Found N files")."""
    done = pixelpipe(
        "demo", "--per-class", "12", "--epochs", "1", "--image-size", "32",
        "--data-dir", str(tmp_path / "demo"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) <= 16, "\n".join(lines)
    for noise in ("Finished in state", "oneDNN", "cuInit", "cuda", "Found ", "absl"):
        assert noise not in done.stdout + done.stderr, noise
    assert "validation accuracy:" in done.stdout and "report:" in done.stdout


def test_run_says_per_stage_what_was_left_out_why_and_which_flag_fixes_it(pixelpipe, tmp_path):
    """`pixelpipe run` groups each stage's statuses other than ok as the stage's own command
    does: scrape's too-small thumbnails and broken links, prepare's cap."""
    from tasks.demo.gallery import GalleryServer, build_gallery

    gallery = build_gallery(tmp_path / "site", per_class=8, per_page=8)
    with GalleryServer(gallery.site_dir) as server:
        sources = [f"{label}={server.url}{page}" for label, page in gallery.first_pages.items()]
        done = pixelpipe(
            "run", *(a for s in sources for a in ("--sources", s)), "--run-id", "said-1",
            "--allow-private-networks", "--min-size", "64", "--curate", "off",
            "--max-per-class", "6", "--prepare-image-size", "32", "--val-fraction", "0.34",
            "--epochs", "1", "--train-batch-size", "8",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for label in ("forest", "mountain"):
        head = f"scrape said-1 [{label}]: 1 page(s), 12 URL(s) -> ok 8, http_error 2, too_small 2"
        assert head in lines, done.stdout
        reasons = lines[lines.index(head) + 1 : lines.index(head) + 3]
        assert reasons == [
            "  http_error 2: HTTP 404",
            "  too_small 2: 56x42 is below min_size 64 — --min-size sets the smallest side kept",
        ], done.stdout
    assert "prepare said-1 [default]: rendered 12, reused 0, left out 4" in lines, done.stdout
    assert "  capped 4 — --max-per-class raises the cap" in lines
    assert any(line.startswith("predict said-1: 6 images: 6 ok, 0 corrupt") for line in lines)
