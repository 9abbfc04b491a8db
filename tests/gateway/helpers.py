"""Client helpers for gateway tests: raw proxy requests over real sockets, policy builders."""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Any

TIMEOUT = 5.0


def make_policy(*agents: dict[str, Any], **gateway: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"namespace": "ai", "agents": list(agents)}
    if gateway:
        spec["gateway"] = gateway
    return {"apiVersion": "corral.dev/v1alpha1", "kind": "Policy",
            "metadata": {"name": "test"}, "spec": spec}


def agent(name: str, **egress: Any) -> dict[str, Any]:
    return {"name": name, "selector": {"app": name}, "egress": egress}


def raw(port: int, data: bytes, *, read: bool = True) -> bytes:
    """Send ``data`` to the proxy and return everything it answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
        return out


def request(port: int, method: str, url: str, *, headers: dict[str, str] | None = None,
            body: bytes | None = None, sock: socket.socket | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    """One plain-HTTP proxy request (absolute URI); returns status, headers, body."""
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    hdrs = {"Host": url.split("/")[2]} if url.startswith("http://") else {}
    hdrs.update(headers or {})
    if body is not None and "Transfer-Encoding" not in hdrs:
        hdrs.setdefault("Content-Length", str(len(body)))
    head = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    s.sendall(head.encode("latin-1") + b"\r\n" + (body or b""))
    resp = http.client.HTTPResponse(s, method=method)
    resp.begin()
    data = resp.read()
    out = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    if sock is None:
        s.close()
    return out


def connect(port: int, authority: str) -> tuple[socket.socket, int, bytes]:
    """Open a CONNECT tunnel; returns the socket, the status and the raw answer head+body."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    resp = http.client.HTTPResponse(s, method="CONNECT")
    resp.begin()
    body = resp.read() if resp.status != 200 else b""
    return s, resp.status, body


def https_get(port: int, host: str, origin_port: int, ctx: ssl.SSLContext, *,
              sni: str | None = None, path: str = "/") -> tuple[int, bytes]:
    """GET through a CONNECT tunnel with TLS (``sni`` overrides the server name sent)."""
    s, status, body = connect(port, f"{host}:{origin_port}")
    if status != 200:
        s.close()
        return status, body
    name = host if sni is None else (sni or None)
    tls = ctx.wrap_socket(s, server_hostname=name)
    try:
        conn = http.client.HTTPConnection(host)
        conn.sock = tls
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        tls.close()
