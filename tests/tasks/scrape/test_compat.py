"""The internals the *_compat modules rely on, checked against the installed urllib3 and Prefect:
when an upgrade changes one, these fail and name it (the guard or the lease would otherwise
stop working quietly)."""

import inspect
import socket
import uuid
from typing import ClassVar

import pytest
import urllib3
from prefect.client.orchestration import SyncPrefectClient, get_client
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool

from tasks.scrape.hosts import host_key
from tasks.scrape.politeness import limit_name
from tasks.scrape.prefect_compat import try_acquire
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
