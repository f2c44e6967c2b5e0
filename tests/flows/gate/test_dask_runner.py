"""The Dask runner: scrape, prepare and predict on a real LocalCluster (2 worker processes, one
thread each) write the same rows as their default runners, and a worker killed mid-shard costs a
retried shard, not rows."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ParameterTypeError
from pydantic import ValidationError

from flows.gate.runners import local_cluster_kwargs, task_runner_for
from flows.params import DASK_INSTALL, ScrapeParams
from flows.scrape_images import scrape_images
from storage.errors import ConfigError
from storage.parquet import read_table
from tasks.scrape.hosts import host_key
from tasks.scrape.politeness import limit_name
from tests.http_server import SiteServer, picture

NO_DASK = "prefect-dask is not installed (the `dask` extra): " + DASK_INSTALL
IGNORED = ("run_id", "run_date", "fetched_at", "elapsed_s")  # differ between two runs by design


@pytest.fixture(scope="module")
def cluster(prefect_harness):
    """One LocalCluster for the module (starting worker processes is the slow part). Workers
    get the test server's address as a deployment would give them theirs: the task runs carry
    it, and this also covers what a worker logs between tasks."""
    pytest.importorskip("prefect_dask", reason=NO_DASK)
    from distributed import Client, LocalCluster
    from prefect.settings import get_current_settings

    env = {"PREFECT_API_URL": str(get_current_settings().api.url)}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, env=env
        ) as local,
        Client(local) as client,
    ):
        yield client


def rows_of(table: str, run_id: str, data_dir: Path) -> list[str]:
    """The run's rows, order-free, without what differs between runs, with the data root
    written as <root> (each run has its own)."""
    frame = read_table(table, data_dir=data_dir, run_id=run_id)
    frame = frame.drop(columns=[c for c in IGNORED if c in frame.columns])
    root = data_dir.as_posix()
    out = []
    for row in frame.to_dict("records"):
        row = {k: _same(v, root) if isinstance(v, str) else v for k, v in row.items()}
        out.append(json.dumps(row, sort_keys=True, default=str))
    return sorted(out)


def _same(text: str, root: str) -> str:
    # Error messages may name an object's address (<_io.BytesIO object at 0x7f...>).
    return re.sub(r"0x[0-9a-f]+", "0x?", text.replace(root, "<root>"))


# --- choosing a runner ------------------------------------------------------------------------


def test_without_prefect_dask_runner_dask_fails_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # as if it were not installed
    with pytest.raises(ValidationError, match=r'not installed here: pip install -e "\.\[dask\]"'):
        ScrapeParams(pages=["http://127.0.0.1/"], label="x", runner="dask")
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[dask\]"'):
        task_runner_for("dask")


def test_without_prefect_dask_the_flow_fetches_nothing(prefect_harness, monkeypatch, data_dir):
    monkeypatch.setitem(sys.modules, "prefect_dask", None)
    with SiteServer() as site:
        params = {"pages": [site.url("index.html")], "label": "x", "runner": "dask"}
        with pytest.raises(ParameterTypeError, match=r'pip install -e "\.\[dask\]"'):
            scrape_images(params=params | {"allow_private_networks": True})
        assert site.stats.hits == []


def test_an_address_needs_the_dask_runner():
    with pytest.raises(ValidationError, match="dask_address is only used with runner=dask"):
        ScrapeParams(pages=["http://a/"], label="x", dask_address="tcp://127.0.0.1:8786")


def test_the_pipeline_runner_replaces_every_stage_runner(tmp_path):
    from flows.params import PipelineParams

    own = PipelineParams(source_dir=str(tmp_path))
    assert (own.scrape.runner, own.prepare.runner, own.predict.runner) == (
        "threads", "processes", "threads"
    )  # fmt: skip
    one = PipelineParams(source_dir=str(tmp_path), runner="threads")
    assert {s.runner for s in (one.scrape, one.prepare, one.predict)} == {"threads"}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_the_dask_runner_starts_a_machine_sized_cluster_or_joins_one():
    pytest.importorskip("prefect_dask", reason=NO_DASK)
    allowed = sorted(os.sched_getaffinity(0))
    try:  # the machine's size is the cores this process may use: pin it to 1, then 2
        for cores in ({allowed[0]}, set(allowed[:2])):
            os.sched_setaffinity(0, cores)
            local = task_runner_for("dask")
            assert local.cluster_kwargs == {
                "n_workers": len(cores), "threads_per_worker": 1, "processes": True
            }  # fmt: skip
    finally:
        os.sched_setaffinity(0, allowed)
    assert local_cluster_kwargs(3)["n_workers"] == 3
    joined = task_runner_for("dask", "tcp://10.0.0.5:8786")
    assert joined.address == "tcp://10.0.0.5:8786" and not joined.cluster_kwargs


def test_the_dask_runner_keeps_no_task_arguments_in_the_flow_process(cluster):
    """Dask logs each connection's last 1,000 messages for debugging, task arguments included
    (every shard's URLs stayed in the flow process until the run ended): the runner's client
    logs none. The log is Dask's own attribute: this fails loudly if it moves."""
    with task_runner_for("dask", cluster.scheduler.address) as runner:
        assert runner.client.submit(sum, [1, 2, 3]).result() == 6
        assert runner.client.scheduler_comm.recent_message_log.maxlen == 0
        assert len(runner.client.scheduler_comm.recent_message_log) == 0


# --- the same rows on a cluster -----------------------------------------------------------------


def gallery(n: int) -> dict[str, bytes]:
    """A page of n pictures, two of them repeated under other URLs in later shards, plus a
    broken file, a tiny one and a missing one."""
    files = {f"img/p{i}.jpg": picture(200 + i) for i in range(n)}
    files |= {"img/again-0.jpg": files["img/p0.jpg"], "img/again-5.jpg": files["img/p5.jpg"]}
    files |= {"img/broken.jpg": b"not a picture", "img/tiny.png": picture(1, (8, 8), "PNG")}
    names = [*files, "img/missing.jpg"]
    html = "".join(f'<img src="/{name}">' for name in names)
    return files | {"page.html": f"<html><body>{html}</body></html>".encode()}


def scrape(site: SiteServer, data_dir: Path, run_id: str, **options):
    params = {
        "pages": [site.url("page.html")], "label": "pics", "run_id": run_id,
        "data_dir": str(data_dir), "allow_private_networks": True, "shard_size": 4,
        "respect_robots": False, "retries": 0,
    } | options  # fmt: skip
    return scrape_images(params=params)


@pytest.mark.slow
def test_scrape_on_dask_writes_the_same_manifest(prefect_harness, cluster, tmp_path):
    address = cluster.scheduler.address
    with SiteServer(root=None, files=gallery(12), latency=0.02) as site:
        threads = scrape(site, tmp_path / "a", "run-threads")
        site.reset_stats()
        dask = scrape(
            site, tmp_path / "b", "run-dask", runner="dask", dask_address=address, per_host=2
        )
        # Two workers with 16 threads each, yet never more than per_host requests at once.
        assert 1 <= site.stats.max_in_flight <= 2
    assert threads.counts == dask.counts == {
        "ok": 12, "duplicate": 2, "http_error": 1, "too_small": 1, "not_image": 1
    }  # fmt: skip
    assert len(dask.manifest_files) == 5  # 17 URLs in shards of 4
    assert rows_of("scrape_manifest", "run-dask", tmp_path / "b") == rows_of(
        "scrape_manifest", "run-threads", tmp_path / "a"
    )
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(limit_name(host_key(site.base)))
    assert limit.limit == 2 and limit.active_slots == 0


def class_folders(root: Path) -> Path:
    for c, label in enumerate(("cat", "dog", "eel")):
        (root / label).mkdir(parents=True)
        for i in range(7):
            (root / label / f"{i}.jpg").write_bytes(picture(300 + 10 * c + i, (40, 30)))
    (root / "dog" / "copy-of-cat-0.jpg").write_bytes((root / "cat" / "0.jpg").read_bytes())
    (root / "eel" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    return root


@pytest.mark.slow
def test_prepare_on_dask_writes_the_same_dataset(prefect_harness, cluster, tmp_path):
    source = class_folders(tmp_path / "src")
    common = {"source_dir": str(source), "image_size": 16, "batch_size": 4, "val_fraction": 0.3}
    from flows.prepare_dataset import prepare_dataset

    pooled = prepare_dataset(
        params=common | {"data_dir": str(tmp_path / "a"), "run_id": "run-pool", "workers": 2}
    )
    dask = prepare_dataset(
        params=common
        | {"data_dir": str(tmp_path / "b"), "run_id": "run-dask", "runner": "dask"}
        | {"dask_address": cluster.scheduler.address}
    )
    assert dask.counts == pooled.counts and dask.skipped == pooled.skipped
    assert dask.rendered == pooled.rendered == 20  # 22 pictures, 2 copies in conflict
    assert rows_of("dataset_manifest", "run-dask", tmp_path / "b") == rows_of(
        "dataset_manifest", "run-pool", tmp_path / "a"
    )
    pool_files, dask_files = (
        {p.relative_to(d).as_posix(): p.read_bytes() for p in Path(d).rglob("*.jpg")}
        for d in (pooled.dataset_dir, dask.dataset_dir)
    )
    assert len(dask_files) == 20 and dask_files == pool_files  # byte for byte


def tiny_model(folder: Path) -> Path:
    """A 3-class Keras model with a model card, as train_classifier leaves it."""
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    folder.mkdir(parents=True)
    model.save(folder / "best.keras")
    card = {"model": "tiny", "class_names": ["cat", "dog", "eel"], "image_size": [16, 16]}
    (folder / "model_card.json").write_text(json.dumps(card | {"label_mode": "categorical"}))
    return folder / "best.keras"


@pytest.mark.slow
def test_predict_on_dask_writes_the_same_predictions(prefect_harness, cluster, tmp_path):
    from flows.predict_batch import predict_batch

    images = tmp_path / "images"
    images.mkdir()
    for i in range(10):
        (images / f"{i}.png").write_bytes(picture(400 + i, (20, 20), "PNG"))
    (images / "bad.png").write_bytes(b"nope")
    common = {"inputs": [str(images)], "model": str(tiny_model(tmp_path / "model"))}
    common |= {"shard_size": 4, "batch_size": 2, "top_k": 3, "targets": ["dog"]}
    one = predict_batch(params=common | {"data_dir": str(tmp_path / "a"), "run_id": "run-one"})
    dask = predict_batch(
        params=common
        | {"data_dir": str(tmp_path / "b"), "run_id": "run-dask", "runner": "dask"}
        | {"dask_address": cluster.scheduler.address}
    )
    assert (dask.images, dask.ok, dask.corrupt, dask.shards) == (11, 10, 1, 3)
    assert dask.counts == one.counts and dask.target_hits == one.target_hits
    got = rows_of("predictions", "run-dask", tmp_path / "b")
    assert len(got) == 10 * 3 + 1 and got == rows_of("predictions", "run-one", tmp_path / "a")


# --- a worker dies mid-shard ---------------------------------------------------------------------


def kill_workers_once_fetching(client, site, names, killed: threading.Event) -> threading.Thread:
    """SIGKILL every worker process as soon as the first image request reaches the site.

    With a per-host limit only one shard fetches from the site at a time, so that shard is
    certainly mid-way when its worker dies, and the other worker is waiting for the host limit
    (mid-acquire) or between shards: killing every worker covers both.
    """
    pids = list(client.run(os.getpid).values())

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(site.hits(n) for n in names):
            time.sleep(0.01)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_worker_killed_mid_shard_costs_a_retry_not_rows(prefect_harness, cluster, tmp_path):
    files = {f"img/k{i}.jpg": picture(500 + i) for i in range(12)}
    html = "".join(f'<img src="/{name}">' for name in files)
    files["page.html"] = f"<html><body>{html}</body></html>".encode()
    images = [name for name in files if name != "page.html"]
    killed = threading.Event()
    # One request at a time, 0.5 s each: the first image is still in flight at the kill. The
    # dead shard's lease frees its host after host_lease_s (kept short here).
    with SiteServer(root=None, files=files, latency=0.5) as site:
        watcher = kill_workers_once_fetching(cluster, site, images, killed)
        result = scrape(
            site, tmp_path / "data", "run-kill", runner="dask", concurrency=1,
            dask_address=cluster.scheduler.address, host_lease_s=3,
        )  # fmt: skip
        watcher.join(timeout=5)
        hits = {name: len(site.hits(name)) for name in images}
    assert killed.is_set()  # every worker was killed
    assert 2 in hits.values()  # the killed shard had started fetching, and was run again
    assert result.counts == {"ok": 12} and result.stored == 12
    rows = read_table("scrape_manifest", data_dir=tmp_path / "data", run_id="run-kill")
    assert len(rows) == 12 and rows["url"].is_unique
    assert len(list((tmp_path / "data" / "raw" / "pics").iterdir())) == 12
