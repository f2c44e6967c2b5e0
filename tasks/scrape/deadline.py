"""A total deadline per HTTP request: a watchdog thread shuts the request's socket when time is up.

Socket timeouts bound each read, not the request: a server sending one byte every few
seconds (headers or body) never trips them. The watchdog closes the connection at the
deadline wherever the request is (headers, body, a TLS record), so the blocked read returns
at once and the worker, its per-host slot and its lease are free again.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
import weakref
from typing import Any

from tasks.scrape.urllib3_compat import connection_socket

_current = threading.local()  # the Deadline of the request this thread is making, if any
# Which deadline owns each pooled connection now: a pooled connection changes hands (see
# _shut_all). Kept here rather than as an attribute stamped on urllib3's objects.
_owners: weakref.WeakKeyDictionary[Any, Deadline] = weakref.WeakKeyDictionary()
_owners_lock = threading.Lock()


class Deadline:
    """One request's deadline; the sockets it used are shut when it expires."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self.finished = False
        self._socks: list[tuple[Any, socket.socket]] = []
        self._lock = threading.Lock()

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def attach(self, conn: Any) -> None:
        """Called from the request's thread with the urllib3 connection it sends on."""
        with self._lock:
            with _owners_lock:
                _owners[conn] = self
            sock = connection_socket(conn)
            if sock is not None:
                # Kept here, not read from `conn` later: on a `Connection: close` response,
                # http.client hands the socket to the response and sets conn.sock to None.
                self._socks.append((conn, sock))
            if self.expired:
                self._shut_all()

    def expire(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.expired = True
            self._shut_all()

    def finish(self) -> None:
        with self._lock:
            self.finished = True
            self._socks.clear()

    def _shut_all(self) -> None:
        for conn, sock in self._socks:
            # Back in the pool and taken by another request, the socket is that one's now;
            # detached from its connection (conn.sock changed), only our response reads it.
            with _owners_lock:
                ours = _owners.get(conn) is self
            if ours or connection_socket(conn) is not sock:
                with contextlib.suppress(OSError):
                    # socket.socket's own shutdown, not SSLSocket's (which would unwrap TLS
                    # from this thread while the request's is inside SSL_read): the blocked
                    # read sees the end of the stream.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


def attach_current(conn: Any) -> None:
    """Put `conn` under the deadline of the request this thread is making (if any)."""
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.attach(conn)


class DeadlineConnectionMixin:
    """Mixed into urllib3 connection classes: every socket a request uses is watched."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        attach_current(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        attach_current(self)  # a pooled connection is already connected
        super().request(*args, **kwargs)  # type: ignore[misc]


class Watchdog:
    """One thread that expires deadlines in order; `start` arms one for the calling thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self, seconds: float) -> Deadline:
        """A deadline `seconds` from now, bound to this thread until `end` is called."""
        deadline = Deadline(seconds)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="deadlines")
                self._thread.start()
            heapq.heappush(self._heap, (deadline.at, next(self._seq), deadline))
            self._cond.notify()
        _current.deadline = deadline
        return deadline

    @staticmethod
    def end(deadline: Deadline) -> None:
        deadline.finish()
        if getattr(_current, "deadline", None) is deadline:
            _current.deadline = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)  # ended in time: nothing to do
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)[2].expire()
