"""End to end: a real `prefect server start`, `pixelpipe serve`, and `prefect deployment run`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from flows.cli import server as cli_server
from storage.parquet import read_table
from tasks.demo.gallery import GalleryServer, build_gallery
from tests.flows.cli.test_server import BadProxy
from tests.http_server import SiteServer

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STAGE_FLOWS = {"scrape-images", "prepare-dataset", "train-classifier", "predict-batch"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Processes:
    """Subprocesses started by the test, each in its own session so its children go too."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.started, self.files = logs, [], []

    def start(
        self, name: str, args: list[str], env: dict[str, str], cwd: Path = REPO
    ) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("wb")
        self.files.append(log)
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append((name, proc))
        return proc

    def tail(self, name: str, lines: int = 40) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop_all(self) -> None:
        """Last started first (serve pauses its schedules through the server as it stops):
        SIGTERM the process group of each PID we started, SIGKILL it if it lingers."""
        for _, proc in reversed(self.started):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            with suppress(ProcessLookupError):  # children left behind (a flow run's process)
                os.killpg(proc.pid, signal.SIGKILL)
        for log in self.files:
            log.close()


def api_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    """A real Prefect server (SQLite in a temporary PREFECT_HOME) and `pixelpipe serve`."""
    root = tmp_path_factory.mktemp("e2e")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PIXELPIPE_DATA_DIR": str(root / "data"),
        "KERAS_HOME": str(root / "keras"),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("PREFECT_PROFILE", None)
    procs = Processes(root)
    try:
        procs.start("server", [str(BIN / "prefect"), "server", "start"], env)
        wait_until(lambda: api_healthy(api), 120, "prefect server start")
        defaults = root / "defaults.yaml"
        defaults.write_text(f"dataset_dir: {root / 'data' / 'datasets' / 'nightly'}\n")
        # From a folder outside the checkout: serve imports the installed deployments package.
        serve = [str(BIN / "pixelpipe"), "serve", "--params", str(defaults)]
        procs.start("serve", serve, env, cwd=root)
        yield {"api": api, "env": env, "root": root, "procs": procs}
    finally:
        procs.stop_all()


def prefect_client(api: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Client:
        def __enter__(self):
            self._settings = temporary_settings({PREFECT_API_URL: api})
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc):
            self._client.__exit__(*exc)
            self._settings.__exit__(*exc)

    return _Client()


def deployment(api: str, name: str):
    from prefect.exceptions import ObjectNotFound

    with prefect_client(api) as client:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None


def served(server: dict, name: str = "image-pipeline/on-demand"):
    procs = server["procs"]
    try:
        return wait_until(lambda: deployment(server["api"], name), 120, f"deployment {name}")
    except AssertionError:
        raise AssertionError("pixelpipe serve did not register:\n" + procs.tail("serve")) from None


def test_serve_registers_the_pipeline_schedule_and_concurrency_limit(server):
    pipeline = served(server, "image-pipeline/nightly")  # --params: the nightly deployment
    (schedule,) = pipeline.schedules
    assert schedule.schedule.cron == "0 3 * * *" and schedule.schedule.timezone == "UTC"
    assert schedule.active and not pipeline.paused  # the --params defaults say what to start from
    nightly = str(server["root"] / "data" / "datasets" / "nightly")
    assert pipeline.parameters == {"params": {"dataset_dir": nightly}}
    assert pipeline.global_concurrency_limit.limit == 1
    assert pipeline.concurrency_options.collision_strategy == "ENQUEUE"
    on_demand = served(server)
    assert not on_demand.schedules and on_demand.parameters == {}
    assert "params" in on_demand.parameter_openapi_schema["properties"]
    for flow in ["scrape-images", "prepare-dataset", "train-classifier", "write-report"]:
        assert served(server, f"{flow}/on-demand").tags[0] == "pixelpipe"


def run_deployment_cli(server: dict, name: str, parameters: dict) -> str:
    done = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", name, "--params", json.dumps(parameters)],
        env=server["env"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return re.search(r"UUID: ([0-9a-f-]{36})", done.stdout).group(1)


def final_state(api: str, flow_run_id: str):
    with prefect_client(api) as client:
        run = client.read_flow_run(flow_run_id)
    return run if run.state and run.state.is_final() else None


def test_pipeline_deployment_runs_through_the_cli_on_a_tiny_gallery(server, tmp_path):
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    served(server)
    data_dir = server["root"] / "data"
    gallery = build_gallery(tmp_path / "site", per_class=10, per_page=5)
    run_id = "e2e-run-1"
    with GalleryServer(gallery.site_dir) as site:
        params = {
            "run_id": run_id,
            "data_dir": str(data_dir),
            "sources": [f"{label}={site.url}{page}" for label, page in gallery.first_pages.items()],
            "scrape": {"allow_private_networks": True, "follow_pages": 1, "min_size": 64},
            "prepare": {"image_size": 32, "val_fraction": 0.3, "dataset": "e2e"},
            "train": {"epochs": 1, "batch_size": 8},
            "targets": ["mountain"],
        }
        flow_run_id = run_deployment_cli(server, "image-pipeline/on-demand", {"params": params})
        run = wait_until(
            lambda: final_state(server["api"], flow_run_id), 240, "the pipeline run", poll=1
        )
    assert run.state.is_completed(), f"{run.state}\n" + server["procs"].tail("serve", 80)

    with prefect_client(server["api"]) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
            )
        )
        flows = {c.id: client.read_flow(c.flow_id).name for c in children}
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[c.id for c in children])
            )
        )
    names = sorted(flows.values())
    assert set(names) >= STAGE_FLOWS | {"write-report"}, names
    assert names.count("scrape-images") == 2  # one per label
    assert all(c.state.is_completed() for c in children)

    scraped = read_table("scrape_manifest", data_dir=data_dir, run_id=run_id)
    assert (scraped["status"] == "ok").sum() == 20 and set(scraped["label"]) == {
        "mountain",
        "forest",
    }
    for table in ["dataset_manifest", "epoch_history", "batch_history", "predictions"]:
        assert len(read_table(table, data_dir=data_dir, run_id=run_id)) > 0, table
    assert (data_dir / "reports" / run_id / "report.html").is_file()

    kinds = {a.type for a in artifacts}
    assert {"markdown", "table"} <= kinds, kinds
    report_run = next(i for i, name in flows.items() if name == "write-report")
    assert any(a.type == "markdown" and a.flow_run_id == report_run for a in artifacts)


def test_a_wrong_parameter_is_refused_before_the_run_starts(server):
    served(server)
    done = subprocess.run(
        [
            str(BIN / "prefect"),
            "deployment",
            "run",
            "image-pipeline/on-demand",
            "--params",
            json.dumps({"params": {"dataset_dir": "/x", "train": {"epochs": 0}}}),
        ],
        env=server["env"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "epochs" in done.stdout + done.stderr


def test_a_served_run_outside_the_policy_fails_before_any_work(server, tmp_path):
    """Default policy: the serve process's data root, no Dask scheduler. A run asking for a
    scheduler (a listener of this test) or another data root fails first, connecting nowhere.
    The page has images, so without the policy the runs would download into `elsewhere` and
    submit shards to the "scheduler" (a Dask client connects at its first task)."""
    pytest.importorskip("prefect_dask", reason="runner=dask needs the dask extra")
    served(server, "scrape-images/on-demand")
    elsewhere = tmp_path / "elsewhere"
    gallery = build_gallery(tmp_path / "site", per_class=2, per_page=2)
    with GalleryServer(gallery.site_dir) as site, socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        page = site.url + gallery.first_pages["mountain"]
        base = {"pages": [page], "label": "policy", "allow_private_networks": True}
        asks = {
            "e2e-policy-dask": ({"runner": "dask", "dask_address": address}, "dask_address"),
            "e2e-policy-dir": ({"data_dir": str(elsewhere)}, "data_dir"),
        }
        runs = {
            run_id: run_deployment_cli(
                server, "scrape-images/on-demand", {"params": {**base, **ask, "run_id": run_id}}
            )
            for run_id, (ask, _) in asks.items()
        }
        for run_id, flow_run_id in runs.items():
            run = wait_until(partial(final_state, server["api"], flow_run_id), 120, run_id)
            field = asks[run_id][1]
            assert run.state.is_failed(), f"{run.state}\n" + server["procs"].tail("serve", 80)
            assert "served run refused by the operator's policy" in run.state.message
            assert f"{field} " in run.state.message, run.state.message
        with pytest.raises(BlockingIOError):  # nobody knocked: no connection was queued
            listener.accept()
    assert not elsewhere.exists()
    for run_id in asks:
        assert read_table("scrape_manifest", data_dir=server["root"] / "data", run_id=run_id).empty


def test_prefect_yaml_deploys_every_flow_to_a_process_pool(server):
    env = server["env"]
    prefect = str(BIN / "prefect")
    subprocess.run(
        [prefect, "work-pool", "create", "pixelpipe-process", "--type", "process"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    done = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pipeline = deployment(server["api"], "image-pipeline/nightly-worker")
    assert pipeline.work_pool_name == "pixelpipe-process"
    policy_env = {"PIXELPIPE_ALLOWED_ROOTS": "", "PIXELPIPE_ALLOWED_DASK": ""}
    assert pipeline.job_variables["env"] == policy_env  # the worker's runs get the policy
    assert pipeline.global_concurrency_limit.limit == 1
    (schedule,) = pipeline.schedules
    assert schedule.schedule.cron == "0 3 * * *" and not schedule.active
    flows = ["scrape-images", "prepare-dataset", "train-classifier", "predict-batch"]
    for flow in [*flows, "write-report"]:
        deployed = deployment(server["api"], f"{flow}/on-demand-worker")
        assert deployed.entrypoint.startswith("flows/")
        assert deployed.work_pool_name == "pixelpipe-process"


def test_server_start_is_found_used_and_serve_stops_in_seconds_whatever_the_order(tmp_path):
    """One `pixelpipe server start` for the server's whole life, every command with
    HTTP(S)_PROXY at a proxy that answers 502 and no NO_PROXY (they all work as without it; the
    proxy sees no request): start records where it listens, status says it answers, a second
    start finds it, a flow command runs on it (no temporary server, no hint); `pixelpipe serve`
    finds it too, and stopped first pauses the nightly schedule on its way out; a second serve
    stopped after `pixelpipe server stop` (Prefect's own pause retried against the stopped
    server for over a minute) is out in seconds; stop frees the port at once."""
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}/api"
    with BadProxy() as proxy:
        env = {**os.environ, **proxy.environ(), "PREFECT_HOME": str(home), "DO_NOT_TRACK": "1",
               "PIXELPIPE_DATA_DIR": str(tmp_path / "data"), "PREFECT_RUNNER_POLL_FREQUENCY": "2",
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
        for name in ("PREFECT_API_URL", "NO_PROXY", "no_proxy"):  # the commands find the server
            env.pop(name, None)
        pixelpipe = partial(
            subprocess.run, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )

        def cli(*args: str) -> subprocess.CompletedProcess:
            return pixelpipe([str(BIN / "pixelpipe"), *args])

        procs = Processes(tmp_path)
        try:
            started = cli("server", "start", "--port", str(port))
            assert started.returncode == 0, started.stdout + started.stderr
            assert url in started.stdout
            assert json.loads((home / cli_server.STATE_FILE).read_text())["url"] == url
            status = cli("server", "status")
            assert status.returncode == 0 and f"{url}: answering" in status.stdout
            again = cli("server", "start", "--port", str(port))
            assert again.returncode == 0 and "already running" in again.stdout
            # A flow command finds it: its run is on that server (no temporary one, no hint).
            with SiteServer() as site:
                run = cli("scrape", "--pages", site.url("index.html"), "--label", "site",
                          "--allow-private-networks", "--max-images", "1")  # fmt: skip
            assert run.returncode == 0, run.stdout + run.stderr
            assert f"View at http://127.0.0.1:{port}/runs/flow-run/" in run.stdout + run.stderr
            assert cli_server.HINT not in run.stdout + run.stderr

            serve_stops_first_then_after_the_server(procs, env, api=url, cli=cli, port=port)
            status = cli("server", "status")
            assert status.returncode == 1 and "no pixelpipe server" in status.stdout
        finally:
            procs.stop_all()
            cli("server", "stop")
    assert proxy.requests == []


def serve_stops_first_then_after_the_server(
    procs: Processes, env: dict[str, str], api: str, cli: Callable, port: int
) -> None:
    root = procs.logs
    defaults = root / "defaults.yaml"
    defaults.write_text(f"dataset_dir: {root / 'data' / 'datasets' / 'nightly'}\n")
    serve = [str(BIN / "pixelpipe"), "serve", "--params", str(defaults)]
    first = procs.start("serve1", serve, env, cwd=root)
    nightly = wait_until(lambda: deployment(api, "image-pipeline/nightly"), 240, "nightly")
    assert not nightly.paused
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=30)  # the server is up: a few calls, then out
    assert deployment(api, "image-pipeline/nightly").paused, procs.tail("serve1")
    said = (root / "serve1.log").read_text()
    assert "schedule: image-pipeline/nightly runs at cron '0 3 * * *' (UTC): active" in said
    assert "schedule: paused image-pipeline/nightly" in said

    second = procs.start("serve2", serve, env, cwd=root)
    wait_until(lambda: not deployment(api, "image-pipeline/nightly").paused, 240, "serve2")
    stopped = cli("server", "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"port {port} is free" in stopped.stdout
    assert cli_server._port_free(port)  # at once: a `server start` now would find it free
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=30)  # the server is gone: nothing to wait for
    assert "the Prefect server is gone" in procs.tail("serve2")
