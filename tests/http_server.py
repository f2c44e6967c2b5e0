"""A real HTTP/1.1 server on 127.0.0.1 for scraper tests and benchmarks: the files of
tests/assets/site/ plus images made at start-up, and routes that misbehave on purpose.

Routes (any other path is a file, else 404):
  /flaky/<path>         500 on the first request, then the file
  /ratelimited/<path>   429 with `Retry-After: 1` on the first request, then the file
  /status/<code>        always that status
  /slow/<path>          the file after `slow_s` seconds (a read timeout for a short timeout)
  /redirect/<n>/<path>  a chain of n 302s ending at /<path>
  /goto?url=<url>       a 302 to any URL (another host, a private address, javascript:...)
  /stream/<path>        the file chunked, without Content-Length
  /drip/<path>          the file 100 bytes at a time, every 0.1 s

Per-path behaviour (SiteServer arguments): `trickle` sends a path's headers ("headers") or
body ("body"; "unsized": no Content-Length, the connection closes at the end) one byte
every `trickle_s`; `redirects` answers a path with a 301; `headers`
adds response headers (a name may repeat) to a path.
"""

from __future__ import annotations

import io
import mimetypes
import random
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageDraw

SITE_DIR = Path(__file__).parent / "assets" / "site"


# --- images made at start-up (tiny, deterministic) ----------------------------------------------


def picture(seed: int, size: tuple[int, int] = (48, 40), fmt: str = "JPEG", **save) -> bytes:
    """A small picture, different for every seed: two colours and a diagonal stripe."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.polygon(
        [(0, h), (w // 2, 0), (w, 0), (w // 2, h)], fill=tuple(rng.randrange(256) for _ in range(3))
    )
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def noise_jpeg(size: tuple[int, int], seed: int = 0) -> bytes:
    """Random pixels compress badly: a valid JPEG of a predictable, large size."""
    raw = random.Random(seed).randbytes(size[0] * size[1] * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", size, raw).save(out, "JPEG", quality=95)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of `width` x `height` white pixels, built row by row without ever
    holding the picture: 9400 x 9400 (88 MP) is about 11 KB on disk."""
    row = b"\x00" + b"\xff" * ((width + 7) // 8)  # filter byte, then the packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def generated_files() -> dict[str, bytes]:
    """The images of the test site, by path."""
    plain = picture(1)
    files = {
        "img/plain.jpg": plain,
        "img/plain-copy.jpg": plain,  # same bytes, another URL
        "img/small.jpg": picture(2, (20, 16)),
        "img/large.webp": picture(3, (80, 60), "WEBP"),
        "img/lazy.png": picture(4, fmt="PNG"),
        "img/og.png": picture(5, fmt="PNG"),
        "img/pic-1x.jpg": picture(6),
        "img/pic-2x.bmp": picture(7, (64, 40), "BMP"),
        "img/pic-fallback.jpg": picture(8),
        "img/full.gif": picture(9, fmt="GIF"),
        "img/thumb.jpg": picture(10, (24, 20)),
        "img/flaky.jpg": picture(11),
        "img/ratelimited.jpg": picture(12),
        "img/slow.jpg": picture(13),
        "img/redirected.jpg": picture(14),
        "img/truncated.jpg": picture(15, (64, 64), quality=95)[:400],
        "img/pixel.gif": picture(16, (1, 1), "GIF"),
        "img/huge.png": png_header_only(30_000, 30_000),
        "img/big.jpg": noise_jpeg((160, 160)),
        "private/secret.jpg": picture(17),
    }
    for page in (1, 2, 3):
        files[f"gallery/img/g{page}.jpg"] = picture(100 + page)
    return files


DATA_PNG = picture(99, (36, 36), "PNG")


# --- the server ---------------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    at: float  # time.monotonic() when the request arrived
    headers: dict[str, str]


@dataclass
class Stats:
    hits: list[Hit] = field(default_factory=list)
    # Requests per path, kept beside `hits`: counting in the list on each request made the
    # server slower with every request it had served (O(n) each; a 5,000-image scrape took
    # 11 s on a new server and 39 s on one that had served 30,000 requests).
    per_path: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    connections: int = 0
    trickled: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the end


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client's connection pool is exercised
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without TCP_NODELAY, Nagle's algorithm
        # holds the body back until the client's delayed ACK on a kept-alive connection,
        # adding tens of milliseconds to every pooled request (real servers set it too).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.lock:
            self.server.stats.connections += 1

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:
        site = self.server.site
        with self.server.lock:
            stats = self.server.stats
            stats.hits.append(Hit(self.path, time.monotonic(), dict(self.headers.items())))
            stats.per_path[self.path] += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            first = site.count(self.path) == 1
        try:
            if site.latency:
                site.stopping.wait(site.latency)
            self._route(urlsplit(self.path), first)
        finally:
            with self.server.lock:
                stats.in_flight -= 1

    def _route(self, parts, first: bool) -> None:
        path = parts.path.lstrip("/")
        head, _, rest = path.partition("/")
        site = self.server.site
        if path in site.redirects:
            return self._send(301, b"", "text/plain", {"Location": site.redirects[path]})
        if path in site.trickle and (body := site.file(path)) is not None:
            return self._send_trickling(path, body, site.trickle[path])
        if head == "flaky" and first:
            return self._send(500, b"try again", "text/plain")
        if head == "ratelimited" and first:
            return self._send(429, b"slow down", "text/plain", {"Retry-After": "1"})
        if head == "status" or path in self.server.site.statuses:
            code = int(rest) if head == "status" else self.server.site.statuses[path]
            return self._send(code, b"status", "text/plain")
        if head == "slow":
            self.server.site.stopping.wait(self.server.site.slow_s)
        if head == "redirect":
            n, _, target = rest.partition("/")
            location = f"/redirect/{int(n) - 1}/{target}" if int(n) > 1 else f"/{target}"
            return self._send(302, b"", "text/plain", {"Location": location})
        if head == "goto":
            location = parse_qs(parts.query)["url"][0]
            return self._send(302, b"", "text/plain", {"Location": location})
        if head in ("flaky", "ratelimited", "slow", "stream", "drip"):
            path = rest
        body = self.server.site.file(path)
        if body is None:
            return self._send(404, b"<h1>Not found</h1>", "text/html")
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if head == "stream":
            return self._send_chunked(body, ctype)
        if head == "drip":
            return self._send_dripping(body, ctype)
        return self._send(200, body, ctype)

    def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        for name, value in self.server.site.headers.get(urlsplit(self.path).path.lstrip("/"), []):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_trickling(self, path: str, body: bytes, part: str) -> None:
        """One byte every `trickle_s` of the headers (a long one pads them) or of the body,
        until done or the client hangs up; how many bytes went out is kept in the stats."""
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        # "unsized": no Content-Length, the end of the body is the end of the connection.
        size = "Connection: close" if part == "unsized" else f"Content-Length: {len(body)}"
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{size}\r\nX-Padding: {'x' * 400}\r\n\r\n"
        ).encode()
        slow, fast = (head, body) if part == "headers" else (body, head)
        site, sent = self.server.site, 0
        try:
            if part != "headers":
                self.wfile.write(fast)
            for i in range(len(slow)):
                self.wfile.write(slow[i : i + 1])
                self.wfile.flush()
                sent += 1
                if site.stopping.wait(site.trickle_s):
                    return
            if part == "headers":
                self.wfile.write(fast)
        except OSError:  # the client gave up: the point of the test
            pass
        finally:
            with self.server.changed:
                self.server.stats.trickled[path] = sent
                self.server.changed.notify_all()
            self.close_connection = True

    def _send_dripping(self, body: bytes, ctype: str) -> None:
        """Headers at once, then 100 bytes every 0.1 s: no single read ever times out."""
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(0, len(body), 100):
            self.wfile.write(body[i : i + 100])
            self.wfile.flush()
            if self.server.site.stopping.wait(0.1):
                return

    def _send_chunked(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(body), 4096):
            piece = body[i : i + 4096]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    site: SiteServer
    lock: threading.Lock
    changed: threading.Condition  # on `lock`: notified when a trickled response ends
    stats: Stats

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up early (a timeout, a refused oversized body) is expected here.
        pass


class SiteServer:
    """The test site on 127.0.0.1 (a free port) in a background thread; a context manager.

    `latency` is added to every response; `files` adds or replaces files by path;
    `statuses` makes paths always answer with a status (e.g. {"robots.txt": 503}).
    """

    def __init__(
        self,
        root: Path | None = SITE_DIR,
        files: dict[str, bytes] | None = None,
        latency: float = 0.0,
        slow_s: float = 5.0,
        statuses: dict[str, int] | None = None,
        trickle: dict[str, str] | None = None,
        trickle_s: float = 0.02,
        redirects: dict[str, str] | None = None,
        headers: dict[str, list[tuple[str, str]]] | None = None,
    ) -> None:
        self.root, self.latency, self.slow_s = root, latency, slow_s
        self.statuses = statuses or {}  # path -> status it always answers with
        self.trickle, self.trickle_s = trickle or {}, trickle_s  # path -> "headers" | "body"
        self.redirects = redirects or {}  # path -> Location of a 301
        self.headers = headers or {}  # path -> extra response headers
        self.files = (
            {**generated_files(), **(files or {})} if root == SITE_DIR else dict(files or {})
        )
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.site, self._server.lock, self._server.stats = self, threading.Lock(), Stats()
        self._server.changed = threading.Condition(self._server.lock)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def stats(self) -> Stats:
        return self._server.stats

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def hits(self, path: str) -> list[Hit]:
        with self._server.lock:
            return [h for h in self.stats.hits if h.path == "/" + path.lstrip("/")]

    def count(self, path: str) -> int:
        """Requests for `path` so far (called with the server lock held)."""
        return self.stats.per_path[path]

    def trickled(self, path: str, timeout: float = 10.0) -> int:
        """Bytes a trickled response for `path` sent before it ended (waits for it to end,
        at most `timeout` seconds: the handler notices a hang-up at its next write)."""
        with self._server.changed:
            self._server.changed.wait_for(lambda: path in self.stats.trickled, timeout)
            return self.stats.trickled[path]

    def reset_stats(self) -> None:
        with self._server.lock:
            self._server.stats = Stats()

    def file(self, path: str) -> bytes | None:
        if path in self.files:
            return self.files[path]
        if self.root is None:
            return None
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root.resolve()) or not target.is_file():
            return None
        body = target.read_bytes()
        if target.suffix == ".html":  # pages may embed the generated data: URI picture
            import base64

            body = body.replace(b"{{DATA_PNG}}", base64.b64encode(DATA_PNG))
            body = body.replace(b"{{BASE}}", self.base.encode())
        return body

    def __enter__(self) -> SiteServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()  # releases slow and latency waits at once
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
