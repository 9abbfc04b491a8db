"""The admin port's routes: health, readiness, Prometheus metrics, the quarantine overlay API.

``GET /healthz`` (process alive), ``GET /readyz`` (listeners bound, policy loaded),
``GET /metrics``; ``GET /v1/quarantine`` lists quarantined agents as JSON, ``PUT`` and ``DELETE
/v1/quarantine/<agent>`` flip one agent to deny-all (reason ``quarantined``) at once. Sans-io:
``AdminRequest`` parses one request head with httptools, ``route`` answers it; the socket side
is ``server.AdminServer``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

import httptools
import orjson

MAX_REQUEST = 8192


class Backend(Protocol):
    def ready(self) -> bool: ...
    def metrics_text(self) -> tuple[bytes, str]: ...
    def quarantined(self) -> list[str]: ...
    def known_agents(self) -> list[str]: ...
    async def set_quarantine(self, agent: str, on: bool) -> bool: ...  # True: also saved


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


def _json(status: int, doc: object) -> Reply:
    return Reply(status, orjson.dumps(doc) + b"\n")


class AdminRequest:
    """Feed bytes until ``complete``; then ``method`` and ``path``. ``error`` when malformed."""

    def __init__(self) -> None:
        self.url = b""
        self.authorization = b""
        self.complete = False
        self.seen = 0
        self.error: Reply | None = None
        self._parser = httptools.HttpRequestParser(self)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value

    def authorized(self, token: str | None) -> bool:
        """True without a configured token; else the request must carry ``Bearer <token>``."""
        if token is None:
            return True
        return hmac.compare_digest(self.authorization, b"Bearer " + token.encode())

    def on_headers_complete(self) -> None:
        self.complete = True

    def feed(self, data: bytes) -> None:
        self.seen += len(data)
        if not data or self.seen > MAX_REQUEST:
            self.error = _json(400, {"error": "incomplete or oversized request"})
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = _json(400, {"error": f"malformed request: {exc}"})

    def target(self) -> tuple[str, str] | Reply:
        method = self._parser.get_method().decode("ascii", "replace")
        try:
            path = (httptools.parse_url(self.url).path or b"/").decode("utf-8")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            return _json(400, {"error": "invalid path"})
        return method, path


def encode_reply(reply: Reply) -> bytes:
    head = (b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n")
    return head % (reply.status, b"OK" if reply.status < 400 else b"Error",
                   reply.content_type.encode(), len(reply.body)) + reply.body


def _healthz(_backend: Backend) -> Reply:
    return Reply(200, b"ok\n", "text/plain")


def _readyz(backend: Backend) -> Reply:
    ok = backend.ready()
    return Reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")


def _metrics(backend: Backend) -> Reply:
    body, ctype = backend.metrics_text()
    return Reply(200, body, ctype)


def _quarantine_list(backend: Backend) -> Reply:
    return _json(200, {"quarantined": backend.quarantined()})


_GET = {"/healthz": _healthz, "/readyz": _readyz, "/metrics": _metrics,
        "/v1/quarantine": _quarantine_list}


async def route(backend: Backend, method: str, path: str, *, authorized: bool = True) -> Reply:
    """Method + path -> reply (tests call it without sockets). Changes need ``authorized``."""
    if path.startswith("/v1/quarantine/"):
        if not authorized:
            return _json(401, {"error": "changing quarantine needs Authorization: Bearer <token>"})
        return await _quarantine(backend, method, path.removeprefix("/v1/quarantine/"))
    handler = _GET.get(path) if method == "GET" else None
    if handler is None:
        return _json(404, {"error": f"no such endpoint: {method} {path}"})
    return handler(backend)


async def _quarantine(backend: Backend, method: str, agent: str) -> Reply:
    if method not in ("PUT", "DELETE"):
        return _json(405, {"error": "use PUT or DELETE on /v1/quarantine/<agent>"})
    if agent not in backend.known_agents():
        return _json(404, {"error": f"no agent named {agent!r} in the policy",
                           "agents": backend.known_agents()})
    saved = await backend.set_quarantine(agent, method == "PUT")
    return _json(200, {"quarantined": backend.quarantined(), "saved": saved})
