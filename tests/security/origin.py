"""A loopback TCP origin for attack tests: records every raw byte it receives and counts the
requests in them with a strict HTTP/1.1 parser (httptools/llhttp), so a test can prove that no
second (smuggled) request ever reached it."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

import httptools

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Seen:
    """One connection the origin accepted: its raw bytes and the requests parsed from them."""

    raw: bytearray = field(default_factory=bytearray)
    urls: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    heads: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    error: str | None = None


class _Parse:
    def __init__(self, seen: Seen, sock: socket.socket, reply: bytes) -> None:
        self.seen, self.sock, self.reply = seen, sock, reply
        self.body = b""

    def on_url(self, url: bytes) -> None:
        self.seen.urls.append(url)
        self.seen.heads.append([])

    def on_header(self, name: bytes, value: bytes) -> None:
        self.seen.heads[-1].append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.seen.bodies.append(self.body)
        self.body = b""
        with contextlib.suppress(OSError):
            self.sock.sendall(self.reply)


class RawOrigin:
    """Threaded origin on 127.0.0.1; ``reply`` is sent after each complete request."""

    def __init__(self, reply: bytes = OK, address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.reply = reply
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = socket.create_server(address)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="raw-origin", daemon=True)

    def __enter__(self) -> RawOrigin:
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._accept.join(5)
        for t in self._threads:
            t.join(5)
        self.sock.close()

    def clear(self) -> None:
        with self._lock:
            self.seen = []

    @property
    def urls(self) -> list[bytes]:
        with self._lock:
            return [u for s in self.seen for u in s.urls]

    @property
    def raw(self) -> bytes:
        with self._lock:
            return b"".join(bytes(s.raw) for s in self.seen)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            seen = Seen()
            with self._lock:
                self.seen.append(seen)
            t = threading.Thread(target=self._handle, args=(conn, seen), daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, conn: socket.socket, seen: Seen) -> None:
        parser = httptools.HttpRequestParser(_Parse(seen, conn, self.reply))
        conn.settimeout(0.1)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                seen.raw += data
                try:
                    parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    continue  # after a 101 reply: the rest is not HTTP
                except httptools.HttpParserError as exc:
                    seen.error = str(exc)
                    return
