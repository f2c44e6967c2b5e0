"""A run id is exclusive while a run uses it: claims per (stage, run id), and a dead holder's
claim expires on its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flows.gate.claims import CLAIMS_DIR, RunClaim, RunInUseError
from flows.scrape_images import scrape_images
from storage.parquet import read_table
from tests.http_server import SiteServer

REPO = Path(__file__).resolve().parents[3]


def claims(root: Path, stage: str) -> list[Path]:
    return sorted((root / CLAIMS_DIR / stage).glob("*.claim"))


def test_a_held_run_id_is_refused_in_one_line_naming_the_run(tmp_path):
    with RunClaim(tmp_path, "scrape-images", "nightly"):
        with pytest.raises(RunInUseError) as caught:
            RunClaim(tmp_path, "scrape-images", "nightly").__enter__()
        message = str(caught.value)
        assert "'nightly' is in use" in message and "scrape-images" in message
        assert f"pid {os.getpid()}" in message and "\n" not in message
        assert len(claims(tmp_path, "scrape-images")) == 1  # the refused run left nothing
    assert claims(tmp_path, "scrape-images") == []  # released: the run id is free again
    with RunClaim(tmp_path, "scrape-images", "nightly"):
        pass


def test_claims_are_per_stage_and_per_run_id(tmp_path):
    # The pipeline holds its run id while its subflows claim the same id for their stages.
    with (
        RunClaim(tmp_path, "image-pipeline", "r1"),
        RunClaim(tmp_path, "scrape-images", "r1"),
        RunClaim(tmp_path, "scrape-images", "r2"),
        RunClaim(tmp_path, "scrape-images", "r"),
    ):
        assert len(claims(tmp_path, "scrape-images")) == 3


def test_a_heartbeat_keeps_the_claim_and_a_stale_claim_is_taken_over(tmp_path):
    with RunClaim(tmp_path, "train-classifier", "r1", lease_s=30) as held:
        old = time.time() - 60
        os.utime(held.path, (old, old))  # as if its holder had stopped beating a minute ago
        assert held.beat()  # ...but it beats again: still held
        with pytest.raises(RunInUseError):
            RunClaim(tmp_path, "train-classifier", "r1").__enter__()
        os.utime(held.path, (old, old))
        with RunClaim(tmp_path, "train-classifier", "r1") as taker:  # stale: taken over
            assert claims(tmp_path, "train-classifier") == [taker.path]
        assert not held.beat()  # the old holder learns it lost the claim


HOLDER = """
import sys
from pathlib import Path
from flows.gate.claims import RunClaim
with RunClaim(Path(sys.argv[1]), "scrape-images", "r1", lease_s=float(sys.argv[2])):
    print("held", flush=True)
    sys.stdin.read()  # until killed
"""


def test_a_killed_holders_claim_expires_after_its_lease(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "0.5"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInUseError, match=f"pid {holder.pid}"):
            RunClaim(tmp_path, "scrape-images", "r1").__enter__()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    [dead] = claims(tmp_path, "scrape-images")  # a killed run cannot clean up
    # One lease (0.5 s, the holder's own) without a beat: stale, whatever the claimer's lease.
    old = dead.stat().st_mtime - 1.0
    os.utime(dead, (old, old))
    with RunClaim(tmp_path, "scrape-images", "r1", lease_s=3600) as taker:
        assert claims(tmp_path, "scrape-images") == [taker.path]


@pytest.mark.usefixtures("prefect_harness")
def test_a_second_scrape_with_a_running_run_id_is_refused_and_the_first_keeps_its_rows(data_dir):
    """The measured bug: two scrapes with one --run-id at once both succeeded and the
    warehouse kept only the second one's rows."""
    arrived, release = threading.Event(), threading.Event()
    with SiteServer() as site:
        serve = site.file

        def held_page(path: str) -> bytes | None:
            if path == "index.html":  # the first run is past the gate and working
                arrived.set()
                release.wait(60)
            return serve(path)

        site.file = held_page
        params = {
            "pages": [site.url("index.html")], "label": "things", "data_dir": str(data_dir),
            "allow_private_networks": True, "timeout": 5.0, "run_id": "same",
        }  # fmt: skip
        first: dict = {}
        worker = threading.Thread(target=lambda: first.update(result=scrape_images(params=params)))
        worker.start()
        try:
            assert arrived.wait(60)
            with pytest.raises(RunInUseError, match="'same' is in use"):
                scrape_images(params={**params, "pages": [site.url("gallery/page1.html")]})
        finally:
            release.set()
            worker.join(120)
    rows = read_table("scrape_manifest", data_dir=data_dir, run_id="same")
    assert first["result"].counts and len(rows) == sum(first["result"].counts.values())
    assert set(rows.page_url) == {site.url("index.html")}
