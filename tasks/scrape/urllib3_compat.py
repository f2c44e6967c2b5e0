"""What the scraper needs from urllib3 that urllib3 offers no public way to do, in one place.

The rest is public: connection classes subclassed through `HTTPConnectionPool.ConnectionCls`,
their `connect()` and `request()`, `PoolManager.pool_classes_by_scheme`, `Retry`.
tests/tasks/scrape/test_compat.py fails loudly when what is used here changes.
"""

from __future__ import annotations

import socket
from typing import Any

from urllib3.connection import HTTPConnection

# Checked on import, so a urllib3 without it stops the scraper instead of silently running
# without its address guard (the hook below would never be called).
if not callable(getattr(HTTPConnection, "_new_conn", None)):
    raise ImportError(
        "this urllib3 has no HTTPConnection._new_conn, which pixelpipe's address guard "
        "hooks (tasks/scrape/urllib3_compat.py): install a urllib3 2.x it was tested with"
    )


class NewSocketHook:
    """Mixed into a urllib3 connection class: `on_new_socket(sock)` runs on every socket the
    connection opens, right after the TCP connect and before a byte is sent on it (a TLS
    hello, a proxy's CONNECT, the request). If it raises, the socket is closed.

    Missing upstream: urllib3 has no public hook between opening a socket and using it (no
    socket factory or on-connect callback). `HTTPConnection._new_conn()` is the one place
    every connection, direct or to a proxy, opens its socket; `connect()` is public but
    runs the TLS handshake and the proxy tunnel before it returns.
    """

    def on_new_socket(self, sock: socket.socket) -> None:
        """Override: raise to refuse the socket."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        try:
            self.on_new_socket(sock)
        except BaseException:
            sock.close()
            raise
        return sock


def connection_socket(conn: Any) -> socket.socket | None:
    """The socket a urllib3 connection sends on now (None before it connects, or once a
    `Connection: close` response took it over). Missing upstream: the attribute is
    http.client's `HTTPConnection.sock`, which neither http.client nor urllib3 documents."""
    return getattr(conn, "sock", None)
