"""`pixelpipe server start|status|stop` (Prefect's own `prefect server start --background`, kept
running) and the choice of Prefect API every command makes: $PREFECT_API_URL, else that
server, else a temporary `prefect server start` that lives as long as the command."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import typer

from flows.cli.prefect_compat import process_api_url
from storage import files
from storage.errors import PixelpipeError

STATE_FILE = "pixelpipe-server.json"  # in Prefect's home: the URL of the server we started
# (Prefect records only the pid of its background server, not where it listens).
DEFAULT_PORT = 4200
HEALTH_TIMEOUT_S = 2.0  # a server that does not answer this fast is treated as absent
START_TIMEOUT_S = 120.0  # a first start runs the database migrations: slow on 2 busy cores
STOP_TIMEOUT_S = 30.0  # `prefect server stop` only signals; the port frees once it has exited
LOOPBACK = ("localhost", "127.0.0.1", "::1")
HINT = (
    "no Prefect server found: `pixelpipe server start` makes runs start faster"
    " and keeps their history"
)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def loopback_bypasses_proxies() -> None:
    """Loopback is never proxied: add the loopback names (and a loopback $PREFECT_API_URL
    host) to NO_PROXY and no_proxy, for this process and the ones it starts. Prefect's clients
    (httpx, websockets), requests and urllib all honour it; without it an HTTP_PROXY sends
    the API's health checks to the proxy, and a proxy that answers 502 stalls every command."""
    hosts = list(LOOPBACK)
    api_host = urlsplit(os.environ.get("PREFECT_API_URL", "")).hostname
    with contextlib.suppress(ValueError):
        if api_host and (api_host == "localhost" or ipaddress.ip_address(api_host).is_loopback):
            hosts.append(api_host)
    # Both spellings, merged: urllib and requests read the lower-case one first.
    names = ("NO_PROXY", "no_proxy")
    entries = [e.strip() for n in names for e in os.environ.get(n, "").split(",") if e.strip()]
    merged = ",".join(dict.fromkeys([*entries, *hosts]))
    for name in names:
        os.environ[name] = merged


def home() -> Path:
    """Prefect's home ($PREFECT_HOME, default ~/.prefect): the server's database and state."""
    # Prefect is imported where used: `pixelpipe --help` should not pay its ~1 s import.
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser()


def read_state() -> dict[str, Any] | None:
    """What `pixelpipe server start` recorded (url, port), or None."""
    try:
        state = json.loads((home() / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "url" in state else None


def healthy(api_url: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """True when the Prefect API at `api_url` answers its health check (Prefect's client,
    without its retries: a server that is absent should be found absent at once)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_CLIENT_MAX_RETRIES: 0}),
        get_client(sync_client=True, httpx_settings={"timeout": timeout}) as client,
    ):
        return client.api_healthcheck() is None


def running_url() -> str | None:
    """The API URL of a pixelpipe-started server that answers, else None."""
    state = read_state()
    return state["url"] if state and healthy(state["url"]) else None


def _port_free(port: int) -> bool:
    """Whether `prefect server start` could bind the port (it binds with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _until(
    check: Callable[[], bool], timeout: float, alive: Callable[[], bool] = lambda: True
) -> bool:
    """Poll `check` until it holds (True), `timeout` passes or `alive()` turns false."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline or not alive():
            return False
        time.sleep(0.2)
    return True


def _prefect(args: list[str], api_url: str) -> subprocess.CompletedProcess[str]:
    """Run Prefect's own CLI on our Prefect home, in a session of its own: a server it starts in
    the background outlives this command and the terminal."""
    env = {**os.environ, "PREFECT_HOME": str(home()), "PREFECT_API_URL": api_url}
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args], env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, start_new_session=True, timeout=START_TIMEOUT_S,
    )  # fmt: skip


def _said(done: subprocess.CompletedProcess[str]) -> str:
    lines = [x.strip() for x in (done.stdout + done.stderr).splitlines() if x.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"


def start(port: int = DEFAULT_PORT, echo: Callable[[str], None] = print) -> str:
    """`prefect server start --background` on 127.0.0.1:`port`; its API URL once it answers."""
    if (url := running_url()) is not None:
        echo(f"a pixelpipe server is already running at {url}")
        return url
    if not _port_free(port):
        raise PixelpipeError(f"port {port} on 127.0.0.1 is in use: choose another with --port")
    home().mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/api"
    args = ["server", "start", "--background", "--host", "127.0.0.1", "--port", str(port)]
    done = _prefect(args, url)
    if done.returncode != 0:
        raise PixelpipeError(f"prefect server start: {_said(done)}")
    files.write_text(home() / STATE_FILE, json.dumps({"url": url, "port": port}))
    if not _until(lambda: healthy(url), START_TIMEOUT_S):
        stop()
        raise PixelpipeError(
            f"the Prefect server did not answer at {url} in {START_TIMEOUT_S:.0f} s: run"
            f" `prefect server start --host 127.0.0.1 --port {port}` to see why"
        )
    warm(url)
    echo(f"Prefect server running at {url} (UI {url.removesuffix('/api')})")
    echo(f"home {home()}; stop it with `pixelpipe server stop`")
    return url


def warm(api_url: str) -> None:
    """Ask once what a command's flow run asks first (the version, flows, runs, concurrency
    limits, artifacts): the server's first answers (database connections, each query's first
    compilation) are paid here rather than by the first command after `server start`. Reads
    only, so nothing shows in the UI."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        client.api_version()
        client.read_flows(limit=1)
        client.read_flow_runs(limit=1)
        client.read_global_concurrency_limits(limit=1)
        client.read_artifacts(limit=1)


def status() -> tuple[str, bool]:
    """A line saying where the server is, and whether it answers."""
    state = read_state()
    if state is None:
        return f"no pixelpipe server (none recorded in {home() / STATE_FILE})", False
    url = state["url"]
    if healthy(url):
        return f"pixelpipe server at {url}: answering (UI {url.removesuffix('/api')})", True
    return f"pixelpipe server at {url}: NOT answering (`pixelpipe server start` again)", False


def stop() -> str:
    """`prefect server stop`, then wait until the port is free: a `server start` right after
    must find it free (Prefect's stop only sends the signal)."""
    state = read_state()
    if state is None:
        return "no pixelpipe server to stop"
    url = state["url"]
    port = int(state.get("port") or urlsplit(url).port or DEFAULT_PORT)
    done = _prefect(["server", "stop"], url)
    freed = _until(lambda: _port_free(port), STOP_TIMEOUT_S)
    (home() / STATE_FILE).unlink(missing_ok=True)
    if not freed:
        raise PixelpipeError(
            f"port {port} is still in use {STOP_TIMEOUT_S:.0f} s after `prefect server stop`"
            f" ({_said(done)}): stop the process listening there"
        )
    return f"stopped the pixelpipe server at {url}; port {port} is free"


def _dies_with_parent() -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when the thread that started it ends, however the
    process dies (SIGKILL included). prctl is looked up here, before the fork: loading a
    library between fork and exec can deadlock a threaded parent."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class _Temporary:
    """This process's temporary server: one, reused by every command run in the process, and
    stopped at exit (after Prefect's log and event workers have drained into it)."""

    process: subprocess.Popen[bytes] | None = None
    url: str = ""

    @classmethod
    def stop(cls) -> None:
        if cls.process is not None and cls.process.poll() is None:
            cls.process.terminate()
            try:
                cls.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                cls.process.kill()
                cls.process.wait()
        cls.process = None


def temporary_server() -> str:
    """Start `prefect server start` on a free loopback port, as a child that dies with this
    process (on Linux, even when it is SIGKILLed), from this thread; its API URL."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as TIMEOUT

    if _Temporary.process is not None and _Temporary.process.poll() is None:
        return _Temporary.url
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    # No UI, scheduler or late-run marking: nobody looks at them during one command.
    command += ["--port", str(port), "--no-ui", "--no-scheduler", "--no-late-runs"]
    # The server's output, read back only to say why a start failed (it keeps its own handle).
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PREFECT_HOME": str(home())},
            preexec_fn=_dies_with_parent() if sys.platform == "linux" else None,
        )  # fmt: skip
        _Temporary.process, _Temporary.url = process, url
        if not _until(lambda: healthy(url), TIMEOUT.value(), alive=lambda: process.poll() is None):
            _Temporary.stop()
            log.seek(0)
            said = log.read().decode(errors="replace").strip().splitlines()[-3:]
            raise PixelpipeError("the temporary Prefect server did not start: " + " | ".join(said))
    atexit.register(_Temporary.stop)
    return url


@contextlib.contextmanager
def prefect_api(echo: Callable[[str], None] = print) -> Iterator[str]:
    """Use $PREFECT_API_URL if set, else a pixelpipe server that answers, else a temporary
    server (saying once how to avoid it); yields which one."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield "PREFECT_API_URL"
        return
    choice, url = "pixelpipe server", running_url()
    if url is None:
        echo(HINT)
        choice, url = "temporary", temporary_server()
    with temporary_settings(updates={PREFECT_API_URL: url}), process_api_url(url):
        yield choice


server_app = typer.Typer(
    help="A local Prefect server (API and UI) that every pixelpipe command finds and uses.",
    no_args_is_help=True,
)


def _fail(error: PixelpipeError) -> typing.NoReturn:
    typer.echo(f"pixelpipe: error: {error}", err=True)
    raise typer.Exit(1)


@server_app.command("start", help="Start `prefect server start --background` on 127.0.0.1.")
def start_command(
    port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535, help="Port on 127.0.0.1"),
) -> None:
    try:
        start(port, echo=typer.echo)
    except PixelpipeError as e:
        _fail(e)


@server_app.command("status", help="Say whether the pixelpipe server runs and answers.")
def status_command() -> None:
    line, ok = status()
    typer.echo(line)
    if not ok:
        raise typer.Exit(1)


@server_app.command("stop", help="Stop the server `pixelpipe server start` started.")
def stop_command() -> None:
    try:
        typer.echo(stop())
    except PixelpipeError as e:
        _fail(e)
