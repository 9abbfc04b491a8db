"""Shared pieces of the gateway policy attack tests: a DNS server naming loopback, a TCP
listener that counts every connection it accepts (did the gateway dial?), and a check that no
traceback reached the gateway's stderr."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from corral.gateway.testing import GatewayProcess, StaticDns, eventually

NAMES = ("allowed.test", "self.test", "other.test")
__all__ = ["Counter", "Echo", "client_hello", "counter", "echo", "eventually", "loop_dns",
           "no_traceback"]


@pytest.fixture()
def loop_dns() -> Iterator[StaticDns]:
    with StaticDns({n: [[("127.0.0.1", 300)]] for n in NAMES}) as server:
        yield server


class Counter:
    """A loopback TCP listener that accepts and counts connections, then closes them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for _ in range(100_000):  # bounded; each turn waits at most 0.2 s
            if self._stop.is_set():
                return
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture()
def counter() -> Iterator[Counter]:
    c = Counter()
    yield c
    c.close()


def no_traceback(gw: GatewayProcess) -> None:
    err = gw.stderr()
    assert "Traceback" not in err, err


def client_hello(sni: str) -> bytes:
    """The first TLS record a client sends for ``sni`` (never completed)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):  # the hello is now in ``outgoing``
        tls.do_handshake()
    return bytes(outgoing.read())


class Echo:
    """A loopback TCP server that echoes every connection's bytes back (tunnel tests)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        for _ in range(1000):  # bounded
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            for _ in range(10_000):  # bounded
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)


@pytest.fixture()
def echo() -> Iterator[Echo]:
    e = Echo()
    yield e
    e.sock.close()
