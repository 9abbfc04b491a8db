"""The admin port: health, readiness, Prometheus metrics and the quarantine overlay API.

``GET /healthz`` (process alive), ``GET /readyz`` (listeners bound, policy loaded),
``GET /metrics``; ``GET /v1/quarantine`` lists quarantined agents as JSON, ``PUT`` and ``DELETE
/v1/quarantine/<agent>`` flip one agent to deny-all (reason ``quarantined``) for every new
request at once. One request per connection; parsed with httptools; bad input gets a 4xx.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

import httptools
import orjson

log = logging.getLogger("corral.gateway.admin")
MAX_REQUEST = 8192


class Backend(Protocol):
    def ready(self) -> bool: ...
    def metrics_text(self) -> tuple[bytes, str]: ...
    def quarantined(self) -> list[str]: ...
    def known_agents(self) -> list[str]: ...
    async def set_quarantine(self, agent: str, on: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


def _json(status: int, doc: object) -> Reply:
    return Reply(status, orjson.dumps(doc) + b"\n")


class _Head:
    """httptools callbacks collecting one request line."""

    def __init__(self) -> None:
        self.url = b""
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_headers_complete(self) -> None:
        self.complete = True


async def route(backend: Backend, method: str, path: str) -> Reply:
    """Pure-ish routing: method + path -> reply (tests call it without sockets)."""
    if path == "/healthz" and method == "GET":
        return Reply(200, b"ok\n", "text/plain")
    if path == "/readyz" and method == "GET":
        ok = backend.ready()
        return Reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain")
    if path == "/metrics" and method == "GET":
        body, ctype = backend.metrics_text()
        return Reply(200, body, ctype)
    if path == "/v1/quarantine" and method == "GET":
        return _json(200, {"quarantined": backend.quarantined()})
    if path.startswith("/v1/quarantine/"):
        return await _quarantine(backend, method, path.removeprefix("/v1/quarantine/"))
    return _json(404, {"error": f"no such endpoint: {method} {path}"})


async def _quarantine(backend: Backend, method: str, agent: str) -> Reply:
    if method not in ("PUT", "DELETE"):
        return _json(405, {"error": "use PUT or DELETE on /v1/quarantine/<agent>"})
    if agent not in backend.known_agents():
        return _json(404, {"error": f"no agent named {agent!r} in the policy",
                           "agents": backend.known_agents()})
    await backend.set_quarantine(agent, method == "PUT")
    return _json(200, {"quarantined": backend.quarantined()})


class AdminServer:
    def __init__(self, backend: Backend, host: str, port: int) -> None:
        self._backend = backend
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                reply = await self._answer(reader)
            writer.write(b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%b" % (
                             reply.status, b"OK" if reply.status < 400 else b"Error",
                             reply.content_type.encode(), len(reply.body), reply.body))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("admin: error while answering")
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> Reply:
        head = _Head()
        parser = httptools.HttpRequestParser(head)
        seen = 0
        while not head.complete:
            data = await reader.read(4096)
            seen += len(data)
            if not data or seen > MAX_REQUEST:
                return _json(400, {"error": "incomplete or oversized request"})
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                return _json(400, {"error": f"malformed request: {exc}"})
        method = parser.get_method().decode("ascii", "replace")
        try:
            path = (httptools.parse_url(head.url).path or b"/").decode("utf-8")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            return _json(400, {"error": "invalid path"})
        return await route(self._backend, method, path)
