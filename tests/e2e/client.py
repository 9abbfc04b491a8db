"""A small, deliberately raw HTTP proxy client for the e2e tests (runs in the agent namespace).

Raw sockets on purpose: the attack tests send bytes a well-behaved client library would refuse
to send (odd IP spellings, userinfo, bad framing). Response headers are parsed with the standard
library's ``http.client.parse_headers``; TLS is the real ``ssl`` module verifying against the
test bed's trustme CA.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.verify.netns import Namespace

MAX_HEAD = 64 * 1024
MAX_BODY = 1 << 20


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    raw_head: bytes = field(repr=False, default=b"")
    client: str = ""  # our ip:port as the gateway saw it: the access record's ``client``

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Buffered:
    """A socket reader that keeps bytes read past one response for the next (pipelining)."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self.sock = sock
        self.extra = b""

    def recv(self, n: int) -> bytes:
        if self.extra:
            data, self.extra = self.extra, b""
            return data
        return self.sock.recv(n)

    def unread(self, data: bytes) -> None:
        self.extra = data + self.extra


Readable = socket.socket | ssl.SSLSocket | Buffered


def _read_head(sock: Readable) -> tuple[bytes, bytes]:
    """Bytes up to the blank line, and whatever came after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response head: {buf!r}")
        buf += chunk
        if len(buf) > MAX_HEAD:
            raise ConnectionError("response head too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def read_response(sock: Readable, *, head_only: bool = False) -> Response:
    """One HTTP/1.x response; the body is read by Content-Length (or to EOF without one)."""
    head, rest = _read_head(sock)
    status_line, _, header_bytes = head.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ConnectionError(f"not an HTTP response: {status_line!r}")
    headers = http.client.parse_headers(io.BytesIO(header_bytes + b"\r\n\r\n"))
    status = int(parts[1])
    if head_only:
        return Response(status, headers, rest, head)
    length = headers.get("Content-Length")
    body = rest
    want = int(length) if length is not None else MAX_BODY
    while len(body) < want:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if length is None:
                break
            raise
        if not chunk:
            break
        body += chunk
    if isinstance(sock, Buffered) and len(body) > want:
        sock.unread(body[want:])
    return Response(status, headers, body[:want], head)


def connect(ns: Namespace, host: str, port: int, *, timeout: float = 5.0) -> socket.socket:
    return ns.connect(host, port, timeout=timeout)


def local_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def send_raw(ns: Namespace, host: str, port: int, data: bytes, *,
             timeout: float = 5.0) -> Response:
    """Send bytes as they are and read one response."""
    with connect(ns, host, port, timeout=timeout) as sock:
        sock.sendall(data)
        resp = read_response(sock)
        resp.client = local_address(sock)
        return resp


def get(ns: Namespace, proxy: tuple[str, int], url: str, *, host: str | None = None,
        headers: dict[str, str] | None = None, method: str = "GET",
        timeout: float = 5.0) -> Response:
    """A plain-HTTP proxy request with an absolute URI (Host derived from the URL unless given)."""
    if host is None:
        host = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    lines = [f"{method} {url} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    return send_raw(ns, proxy[0], proxy[1], data, timeout=timeout)


def open_tunnel(ns: Namespace, proxy: tuple[str, int], authority: str, *,
                timeout: float = 5.0) -> tuple[socket.socket, Response]:
    """Send CONNECT; on 200 the socket is a tunnel. The caller closes the socket."""
    sock = connect(ns, proxy[0], proxy[1], timeout=timeout)
    try:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        first = read_response(sock, head_only=True)
        first.client = local_address(sock)
        if first.status == 200:
            return sock, first
        sock.settimeout(timeout)
        length = int(first.headers.get("Content-Length") or 0)
        body = first.body
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return sock, Response(first.status, first.headers, body, first.raw_head, first.client)
    except BaseException:
        sock.close()
        raise


def tls_context(ca_pem: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def https_get(ns: Namespace, proxy: tuple[str, int], authority: str, ca_pem: Path, *,
              sni: str | None = None, path: str = "/", timeout: float = 5.0,
              ) -> Response:
    """CONNECT, then real TLS (verified against the CA, SNI = ``sni`` or the CONNECT host),
    then one GET. Returns the CONNECT response when it is not 200."""
    sock, first = open_tunnel(ns, proxy, authority, timeout=timeout)
    with sock:
        if first.status != 200:
            return first
        name = sni if sni is not None else authority.rsplit(":", 1)[0]
        with tls_context(ca_pem).wrap_socket(sock, server_hostname=name) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                        .encode())
            resp = read_response(tls)
            resp.client = first.client
            return resp
