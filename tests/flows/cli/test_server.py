"""Which Prefect API a command uses ($PREFECT_API_URL, a pixelpipe server that answers, a
temporary server), a SIGKILLed command that leaves no temporary server behind (`pixelpipe
server start|status|stop` on a real Prefect server: tests/e2e/test_serve.py, with serve), and
loopback traffic that never goes through an environment proxy (a loopback "proxy" answering 502
counts what reaches it)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

from flows.cli import server
from tests.http_server import SiteServer

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_home(tmp_path):
    """A Prefect home of our own, and no $PREFECT_API_URL (the test harness sets one)."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    with temporary_settings(updates={PREFECT_HOME: str(home)}, restore_defaults={PREFECT_API_URL}):
        yield home


def record(home: Path, url: str) -> None:
    (home / server.STATE_FILE).write_text(json.dumps({"url": url}))


class BadProxy:
    """A loopback "proxy" that answers 502 to every request (any method, CONNECT included)
    and counts them: what an environment proxy would do to loopback traffic it should not get."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def __getattr__(self, name: str):
                if not name.startswith("do_"):
                    raise AttributeError(name)
                return self._bad_gateway

            def _bad_gateway(self) -> None:
                proxy.requests.append(f"{self.command} {self.path}")
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> BadProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def environ(self) -> dict[str, str]:
        """HTTP(S)_PROXY at this proxy, and no NO_PROXY of any spelling."""
        return {"HTTP_PROXY": self.url, "HTTPS_PROXY": self.url, "http_proxy": self.url,
                "https_proxy": self.url}  # fmt: skip


def api_choice() -> tuple[str, str | None, str | None, list[str]]:
    said: list[str] = []
    with server.prefect_api(echo=said.append) as choice:
        return choice, PREFECT_API_URL.value(), os.environ.get("PREFECT_API_URL"), said


def test_a_pixelpipe_server_that_answers_is_used(prefect_home, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with SiteServer(root=None, files={"api/health": b"true"}) as site:
        url = site.url("api")
        record(prefect_home, url)
        assert server.running_url() == url
        assert api_choice() == ("pixelpipe server", url, url, [])
    assert PREFECT_API_URL.value() is None and "PREFECT_API_URL" not in os.environ


def test_prefect_api_url_wins_over_a_pixelpipe_server(prefect_home):
    with SiteServer(root=None, files={"api/health": b"true"}) as site:
        record(prefect_home, site.url("api"))
        url = "http://127.0.0.1:9/api"
        with (
            temporary_settings(updates={PREFECT_API_URL: url}),
            server.prefect_api(echo=print) as choice,
        ):
            assert choice == "PREFECT_API_URL"
            assert PREFECT_API_URL.value() == url


def test_a_server_that_does_not_answer_is_not_used(prefect_home):
    assert server.running_url() is None  # nothing recorded
    record(prefect_home, f"http://127.0.0.1:{free_port()}/api")  # nobody listens
    assert server.running_url() is None
    with SiteServer(root=None, files={}) as site:  # answers, but not its health check (404)
        record(prefect_home, site.url("api"))
        assert server.running_url() is None
    line, ok = server.status()
    assert not ok and "NOT answering" in line


def _proxied(monkeypatch, proxy: BadProxy) -> None:
    for name, value in proxy.environ().items():
        monkeypatch.setenv(name, value)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "")  # none: monkeypatch restores what was there


def test_loopback_bypasses_proxies_whatever_the_spelling(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "intranet.invalid")
    monkeypatch.setenv("no_proxy", "other.invalid")  # urllib and requests read this one first
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.2:9/api")
    server.loopback_bypasses_proxies()
    server.loopback_bypasses_proxies()  # twice: nothing is added twice
    expected = "intranet.invalid,other.invalid,localhost,127.0.0.1,::1,127.0.0.2"
    assert os.environ["NO_PROXY"] == os.environ["no_proxy"] == expected


def test_the_health_check_never_goes_through_an_environment_proxy(monkeypatch):
    with BadProxy() as proxy, SiteServer(root=None, files={"api/health": b"true"}) as site:
        _proxied(monkeypatch, proxy)
        assert not server.healthy(site.url("api"))  # the proxy's 502: it was on the path
        assert proxy.requests == [f"GET {site.url('api/health')}"]
        proxy.requests.clear()
        server.loopback_bypasses_proxies()
        assert server.healthy(site.url("api"))
        assert proxy.requests == []


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # killed; its new parent has not reaped it yet


def _cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(home), **extra}
    env.pop("PREFECT_API_URL", None)
    return env


@pytest.mark.e2e
def test_a_sigkilled_command_leaves_no_temporary_server(tmp_path, data_dir):
    """No server answers (a stale record): the command says how to avoid the temporary server,
    starts it (through no proxy), and is killed mid-flow; the server goes with it."""
    home = tmp_path / "home"
    home.mkdir()
    record(home, f"http://127.0.0.1:{free_port()}/api")
    with BadProxy() as proxy, SiteServer(slow_s=120) as site:  # the page never comes in time
        args = [sys.executable, "-m", "flows.cli", "scrape", "--pages", site.url("slow/index.html")]
        args += ["--label", "x", "--allow-private-networks", "--timeout", "300"]
        log = (tmp_path / "cli.log").open("w")
        env = _cli_env(home, **proxy.environ())
        cli = subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while not site.hits("slow/index.html") and time.monotonic() < deadline:
                assert cli.poll() is None, (tmp_path / "cli.log").read_text()
                time.sleep(0.2)
            servers = [p for p in _children(cli.pid) if b"server\0start" in _cmdline(p)]
            assert len(servers) == 1, (tmp_path / "cli.log").read_text()
            cli.send_signal(signal.SIGKILL)
            cli.wait(timeout=30)
            deadline = time.monotonic() + 30
            while not _gone(servers[0]) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _gone(servers[0]), "the temporary Prefect server outlived its SIGKILLed parent"
        finally:
            if cli.poll() is None:
                cli.kill()
    assert server.HINT in (tmp_path / "cli.log").read_text()
    assert proxy.requests == []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
