"""Fixtures for gateway tests: loopback HTTP/HTTPS origins (trustme CA), a static DNS server,
and a policy builder. Every origin listens on 127.0.0.1, so policies that must reach them list
``allow_cidrs: [127.0.0.0/8]``; without it the SSRF guard refuses them (tests prove both)."""

from __future__ import annotations

import json
import ssl
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme

from corral.gateway.testing import StaticDns

NAMES = ["allowed.test", "other.test", "deny.allowed.test", "sub.wild.test", "rebind.test",
         "private.test", "xn--pple-43d.test", "apple.test"]


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        doc = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
               "body": body.decode("latin-1"), "peer": self.client_address[1]}
        out = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().strip(), 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _reply

    def log_message(self, *args: Any) -> None:
        pass


class Origin(ThreadingHTTPServer):
    """The test origin. Clients that hang up mid-reply (the gateway closing a refused tunnel,
    a test that stopped reading) are expected here: not tracebacks in the test output."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)


def _serve(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def origin_http() -> Iterator[ThreadingHTTPServer]:
    yield from _serve(Origin(("127.0.0.1", 0), Echo))


@pytest.fixture(scope="session")
def origin_https(ca: trustme.CA) -> Iterator[ThreadingHTTPServer]:
    server = Origin(("127.0.0.1", 0), Echo)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*NAMES, "127.0.0.1").configure_cert(ctx)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


@pytest.fixture(scope="session")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture()
def dns_server() -> Iterator[StaticDns]:
    records: dict[str, list[list[tuple[str, int]]]] = {
        name: [[("127.0.0.1", 300)]] for name in NAMES
    }
    records["private.test"] = [[("10.1.2.3", 300)]]
    records["meta.test"] = [[("169.254.169.254", 300)]]
    records["rebind.test"] = [[("127.0.0.1", 0)], [("169.254.169.254", 0)]]
    records["v6.test"] = [[("::1", 300)]]
    records["mapped.test"] = [[("::ffff:10.0.0.1", 300)]]
    records["nat64.test"] = [[("64:ff9b::a9fe:a9fe", 300)]]
    with StaticDns(records) as server:
        yield server
