"""`pixelpipe server start|status|stop` (Prefect's own server, kept running) and the choice of
Prefect API every command makes: $PREFECT_API_URL, else that server, else a temporary one."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import typer

from storage import files
from storage.errors import PixelpipeError

STATE_FILE = "pixelpipe-server.json"  # in Prefect's home, beside its database
LOG_FILE = "pixelpipe-server.log"
DEFAULT_PORT = 4200
HEALTH_TIMEOUT_S = 2.0  # a server that does not answer this fast is treated as absent
START_TIMEOUT_S = 120.0  # a first start runs the database migrations: slow on 2 busy cores
STOP_TIMEOUT_S = 15.0
HINT = (
    "no Prefect server found: `pixelpipe server start` makes runs start faster"
    " and keeps their history"
)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def home() -> Path:
    """Prefect's home ($PREFECT_HOME, default ~/.prefect): the server's database, state, log."""
    # Prefect is imported where used: `pixelpipe --help` should not pay its ~1 s import.
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser()


def read_state() -> dict[str, Any] | None:
    """What `pixelpipe server start` recorded (pid, url, log), or None."""
    try:
        state = json.loads((home() / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and {"pid", "url"} <= state.keys() else None


def healthy(api_url: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """True when the Prefect API at `api_url` answers its health check."""
    try:
        return httpx.get(f"{api_url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def running_url() -> str | None:
    """The API URL of a pixelpipe-started server that answers, else None."""
    state = read_state()
    return state["url"] if state and healthy(state["url"]) else None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start(port: int = DEFAULT_PORT, echo: Callable[[str], None] = print) -> str:
    """Start `prefect server start` in the background (its own session, so closing the terminal
    or killing this command leaves it running); return its API URL once it answers."""
    if (url := running_url()) is not None:
        echo(f"a pixelpipe server is already running at {url}")
        return url
    if not _port_free(port):
        raise PixelpipeError(f"port {port} on 127.0.0.1 is in use: choose another with --port")
    home().mkdir(parents=True, exist_ok=True)
    log_path = home() / LOG_FILE
    url = f"http://127.0.0.1:{port}/api"
    command = [sys.executable, "-m", "prefect", "server", "start"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PREFECT_API_URL": url},
        )  # fmt: skip
    state = {"pid": process.pid, "url": url, "log": str(log_path), "port": port}
    files.write_text(home() / STATE_FILE, json.dumps(state))
    deadline = time.monotonic() + START_TIMEOUT_S
    while not healthy(url):
        if process.poll() is not None or time.monotonic() > deadline:
            _terminate(process.pid)
            (home() / STATE_FILE).unlink(missing_ok=True)
            raise PixelpipeError(f"the Prefect server did not start: see {log_path}")
        time.sleep(0.2)
    echo(f"Prefect server running at {url} (UI {url.removesuffix('/api')}), pid {process.pid}")
    echo(f"home {home()}, log {log_path}; stop it with `pixelpipe server stop`")
    return url


def status() -> tuple[str, bool]:
    """A line saying where the server is, and whether it answers."""
    state = read_state()
    if state is None:
        return f"no pixelpipe server (none recorded in {home() / STATE_FILE})", False
    ok = healthy(state["url"])
    answer = "answering" if ok else "NOT answering"
    where = f"pixelpipe server pid {state['pid']} at {state['url']}"
    return f"{where}: {answer} (log {state.get('log')})", ok


def stop() -> str:
    state = read_state()
    if state is None:
        return "no pixelpipe server to stop"
    stopped = _terminate(int(state["pid"]))
    (home() / STATE_FILE).unlink(missing_ok=True)
    return f"stopped the pixelpipe server (pid {state['pid']})" if stopped else "it had stopped"


def _is_prefect_server(pid: int) -> bool:
    """Only signal a process that is still a `prefect server start` (pids get reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"prefect" in argv and b"server" in argv and b"start" in argv


def _terminate(pid: int) -> bool:
    """SIGTERM the server's process group, then SIGKILL it after a bounded wait."""
    if not _is_prefect_server(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child: reap it
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


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


class _PopenDyingWithParent:
    """Stands in for the `subprocess` module inside Prefect's server module while its temporary
    server starts, adding `_dies_with_parent` to the one Popen it makes; the rest is unchanged."""

    def __init__(self, module: Any) -> None:
        self._module, self._preexec = module, _dies_with_parent()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def Popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen:
        return self._module.Popen(*args, preexec_fn=self._preexec, **kwargs)


def start_temporary_server() -> None:
    """Start Prefect's temporary server now, from this (main) thread, so that it dies with
    this process. Prefect would start it lazily, possibly from a worker thread, whose exit
    would then fire the death signal; its clients reuse this instance (one per process)."""
    from prefect.server.api import server as prefect_server

    instance = prefect_server.SubprocessASGIServer()
    if instance.running:
        return
    real = prefect_server.subprocess
    prefect_server.subprocess = _PopenDyingWithParent(real)
    try:
        instance.start()
    finally:
        prefect_server.subprocess = real


@contextlib.contextmanager
def prefect_api(echo: Callable[[str], None] = print) -> Iterator[str]:
    """Use $PREFECT_API_URL if set, else a pixelpipe server that answers, else a temporary
    server (saying once how to avoid it); yields which one."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield "PREFECT_API_URL"
    elif (url := running_url()) is not None:
        # The settings context covers this thread. Threads that do not copy it (our download
        # pools, Prefect's log and event workers) read Prefect's process-global settings, made
        # from the environment at import: without a refresh they would start a temporary server.
        with temporary_settings(updates={PREFECT_API_URL: url}), _environ("PREFECT_API_URL", url):
            yield "pixelpipe server"
    else:
        echo(HINT)
        if sys.platform == "linux":
            start_temporary_server()
        yield "temporary"


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """Set an environment variable, and Prefect's global settings from it, for a while."""
    from prefect.context import refresh_global_settings_context

    old = os.environ.get(name)
    os.environ[name] = value
    refresh_global_settings_context()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
        refresh_global_settings_context()


server_app = typer.Typer(
    help="A local Prefect server (API and UI) that every pixelpipe command finds and uses.",
    no_args_is_help=True,
)


def _fail(error: PixelpipeError) -> typing.NoReturn:
    typer.echo(f"pixelpipe: error: {error}", err=True)
    raise typer.Exit(1)


@server_app.command("start", help="Start `prefect server start` in the background.")
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
    typer.echo(stop())
