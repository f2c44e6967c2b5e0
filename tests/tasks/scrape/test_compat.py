"""The internals the *_compat modules rely on, checked against the installed urllib3 and Prefect:
when an upgrade changes one, these fail and name it (the guard or the lease would otherwise
stop working quietly)."""

import http.client
import inspect
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
import urllib3
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool

from tasks.scrape.hosts import host_key
from tasks.scrape.politeness import limit_name
from tasks.scrape.prefect_compat import (
    BUSY,
    INCREMENT_PATH,
    QUICK_TRIES,
    lease_client,
    try_acquire,
)
from tasks.scrape.urllib3_compat import NewSocketHook, connection_socket
from tests.http_server import SiteServer

# --- urllib3 --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [HTTPConnection, HTTPSConnection])
def test_urllib3_opens_every_socket_in_new_conn(cls):
    assert list(inspect.signature(cls._new_conn).parameters) == ["self"], (
        f"urllib3 {urllib3.__version__} changed {cls.__name__}._new_conn(self): "
        "tasks/scrape/urllib3_compat.py hooks it for the address guard"
    )


class Refused(Exception):
    pass


class Seen(NewSocketHook, HTTPConnection):
    peers: ClassVar[list[str]] = []
    refuse = False

    def on_new_socket(self, sock: socket.socket) -> None:
        Seen.peers.append(sock.getpeername()[0])
        if Seen.refuse:
            raise Refused(sock.getpeername()[0])


def test_the_hook_sees_each_new_socket_before_anything_is_sent():
    with SiteServer(root=None, files={"a.txt": b"hi"}) as site:
        pool = HTTPConnectionPool("127.0.0.1", site.port, maxsize=1)
        pool.ConnectionCls = Seen
        Seen.peers, Seen.refuse = [], False
        assert pool.request("GET", "/a.txt", retries=False).data == b"hi"
        assert pool.request("GET", "/a.txt", retries=False).data == b"hi"
        assert Seen.peers == ["127.0.0.1"]  # once: the pooled connection opened one socket
        Seen.refuse = True
        fresh = HTTPConnectionPool("127.0.0.1", site.port)
        fresh.ConnectionCls = Seen
        with pytest.raises(Refused):
            fresh.request("GET", "/a.txt", retries=False)
        assert len(site.hits("a.txt")) == 2  # the refused socket sent nothing


def test_a_connection_exposes_the_socket_it_sends_on():
    with SiteServer(root=None, files={"a.txt": b"hi"}) as site:
        conn = HTTPConnection("127.0.0.1", site.port)
        assert connection_socket(conn) is None
        conn.connect()
        assert isinstance(connection_socket(conn), socket.socket), (
            f"urllib3 {urllib3.__version__}: a connection's socket is no longer `.sock`; "
            "tasks/scrape/urllib3_compat.py reads it for the per-URL deadline"
        )
        conn.close()


# --- Prefect --------------------------------------------------------------------------------


def test_the_lease_client_method_keeps_its_signature():
    params = list(
        inspect.signature(SyncPrefectClient.increment_concurrency_slots_with_lease).parameters
    )
    assert params[:5] == ["self", "names", "slots", "mode", "lease_duration"]


def test_taken_slots_are_answered_with_a_wait_and_free_ones_with_a_lease(prefect_harness):
    name = limit_name(host_key(f"http://compat-{uuid.uuid4().hex[:8]}.invalid/"))
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
        first = try_acquire(client, [name], 1, 60)
        assert first.lease is not None
        # The server's "slots taken" answer (HTTP 423 + Retry-After): a wait, not an error.
        busy = try_acquire(client, [name], 1, 60)
        assert busy.lease is None and busy.retry_after is not None and not busy.missing
        client.release_concurrency_slots_with_lease(first.lease)
        again = try_acquire(client, [name], 1, 60)
        assert again.lease is not None
        client.release_concurrency_slots_with_lease(again.lease)
        client.delete_global_concurrency_limit_by_name(name)
        gone = try_acquire(client, [name], 1, 60)
    assert gone.lease is None and gone.missing == {name}


class BusyProxy:
    """A forwarding proxy in front of the real Prefect API that answers the first `busy`
    increments with the server's own BUSY answer (HTTP 503, what a SQLite write conflict gets),
    the way a write between the increment's read and write makes the real server answer."""

    def __init__(self, upstream: str, busy: int) -> None:
        self.upstream, self.busy, self.increments = urlsplit(upstream), busy, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith(INCREMENT_PATH):
                    proxy.increments += 1
                    if proxy.increments <= proxy.busy:
                        said = b'{"exception_message":"Service Unavailable"}'
                        self.send_response(BUSY)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(said)))
                        self.end_headers()
                        self.wfile.write(said)
                        return
                up = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                up.request(self.command, self.path, body=body, headers=headers)
                answer = up.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                up.close()

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{self.upstream.path}"

    def __enter__(self) -> "BusyProxy":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("busy", [1, QUICK_TRIES - 1])
def test_a_busy_increment_is_asked_again_at_once_by_a_lease_client(prefect_harness, busy):
    """With Prefect's client retries off, its own handling of a BUSY answer raises (after a
    2 s sleep); a lease client asks again itself and gets the lease from the real server."""
    name = limit_name(host_key(f"http://busy-{uuid.uuid4().hex[:8]}.invalid/"))
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
    try:
        with (
            BusyProxy(PREFECT_API_URL.value(), busy=busy) as proxy,
            temporary_settings(updates={PREFECT_API_URL: proxy.url, PREFECT_CLIENT_MAX_RETRIES: 0}),
            lease_client() as client,
        ):
            got = try_acquire(client, [name], 1, 60)
            assert got.lease is not None and not got.missing
            assert proxy.increments == busy + 1  # the busy answers, then the one granted
            client.release_concurrency_slots_with_lease(got.lease)
    finally:
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name(name).active_slots == 0
            client.delete_global_concurrency_limit_by_name(name)


def test_a_server_that_stays_busy_is_left_to_prefects_retries(prefect_harness):
    """After QUICK_TRIES quick tries, one more through Prefect's client and its retries (none
    here): its error reaches the caller, and nothing loops."""
    with (
        BusyProxy(PREFECT_API_URL.value(), busy=10**6) as proxy,
        temporary_settings(updates={PREFECT_API_URL: proxy.url, PREFECT_CLIENT_MAX_RETRIES: 0}),
        lease_client() as client,
        pytest.raises(PrefectHTTPStatusError) as raised,
    ):
        try_acquire(client, ["pixelpipe-host-never-created"], 1, 60)
    assert raised.value.response.status_code == BUSY
    assert proxy.increments == QUICK_TRIES + 1


# --- one TLS context per process ---------------------------------------------------------------


def test_prefect_clients_share_one_tls_context_built_as_prefect_builds_it(monkeypatch):
    """Prefect makes an SSLContext (20 ms of CPU) per client unless one is passed in; the
    scraper's clients pass the process's one, which follows Prefect's TLS settings."""
    import ssl

    from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY

    from tasks.scrape import prefect_compat

    made = []
    real = ssl.create_default_context
    monkeypatch.setattr(
        ssl, "create_default_context", lambda *a, **k: made.append(1) or real(*a, **k)
    )
    prefect_compat._tls_context_for.cache_clear()
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        for _ in range(5):
            with prefect_compat.api_client(), prefect_compat.lease_client():
                pass
    assert len(made) == 1, "every client after the first reuses the process's TLS context"

    verified = prefect_compat._tls_context()
    assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
    with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        insecure = prefect_compat._tls_context()
    assert insecure is not verified
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname
