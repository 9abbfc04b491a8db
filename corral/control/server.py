"""The control plane's HTTP server: asyncio + httptools (llhttp), keep-alive, bounded bodies.

The only module here that owns listening sockets. Falco's ``http_output`` sends one POST per
alert over a kept-alive connection, so the per-request path is small: parse with httptools,
hand the body to a synchronous ingest call, answer. Bodies over ``max_body`` get 413 and the
connection is closed; a broken request gets 400; the server stays up. Responses go out in
request order even when an (async) admin call is still running.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import httptools
import orjson

from corral.control.app import ControlPlane, IngestResult
from corral.control.conns import Gate, Limits

log = logging.getLogger("corral.control.server")
JSON = b"application/json"
INGEST_PATHS = frozenset(("/v1/falco", "/v1/gateway"))


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def encode(self, keep_alive: bool) -> bytes:
        if keep_alive and self is ACCEPTED_ONE:
            return _ACCEPTED_ONE_BYTES
        return self._encode(keep_alive)

    def _encode(self, keep_alive: bool) -> bytes:
        phrase = HTTPStatus(self.status).phrase.encode()
        lines = [b"HTTP/1.1 %d %s" % (self.status, phrase), b"Content-Type: " + self.content_type,
                 b"Content-Length: %d" % len(self.body)]
        lines += [k + b": " + v for k, v in self.headers]
        if not keep_alive:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


ACCEPTED_ONE = Response(200, b'{"accepted":1}')  # the answer to nearly every Falco POST


def json_response(status: int, data: Any) -> Response:
    return Response(status, orjson.dumps(data))


def problem(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


_ACCEPTED_ONE_BYTES = ACCEPTED_ONE._encode(keep_alive=True)
OVERLOADED = Response(503, b'{"error":"overloaded, retry"}', headers=[(b"Retry-After", b"1")])
COMMIT_FAILED = Response(503, b'{"error":"could not store the events, retry"}',
                         headers=[(b"Retry-After", b"1")])


@dataclass(frozen=True, slots=True)
class AfterCommit:
    """An ingest answer that goes out only once the group commit holding its events is done
    (a 2xx means stored); no task per request, the connection waits on the shared future."""

    committed: asyncio.Future[bool]
    response: Response

    def result(self) -> Response:
        return self.response if self.committed.result() else COMMIT_FAILED

Answer = Response | AfterCommit | Awaitable[Response]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[bytes, bytes]
    body: bytes
    client_cert: bool = False  # the connection presented a client certificate the CA verified
    head_checked: bool = False  # check_head passed it: the credential was already checked

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(frozen=True)
class ServerSettings:
    """Limits and credentials. With no credential at all the server is open (loopback only:
    ``corral serve`` refuses anything else unless told ``--insecure-no-auth``)."""

    max_body: int = 1 << 20
    admin_token: str | None = None  # Bearer, for admin calls and the read API, when set
    ingest_token: str | None = None  # Bearer, for POST /v1/falco and /v1/gateway, when set
    tls: ssl.SSLContext | None = None  # HTTPS; with a client CA, a verified cert is ingest auth
    client_certs: bool = False  # the TLS context verifies client certificates (mTLS ingest)
    limits: Limits = field(default_factory=Limits)

    @property
    def ingest_open(self) -> bool:
        return self.ingest_token is None and not self.client_certs


def _bearer(req: Request, token: str) -> bool:
    given = req.headers.get(b"authorization", b"")
    return hmac.compare_digest(given, b"Bearer " + token.encode())


class Router:
    """Maps requests to the control plane's calls; every path answers, none raises."""

    def __init__(self, plane: ControlPlane, settings: ServerSettings) -> None:
        self.plane = plane
        self.settings = settings

    def handle(self, req: Request) -> Answer:
        try:
            return self._dispatch(req)
        except Exception:  # a bug in one request must not take the server down
            log.exception("request %s %s failed", req.method, req.path)
            return problem(500, "internal error (logged)")

    def _dispatch(self, req: Request) -> Answer:
        path, method = req.path, req.method
        if path in INGEST_PATHS:
            return self._ingest_call(req)
        if path.startswith("/v1/") and not req.head_checked and not self._admin_allowed(req):
            return self._unauthorized("the admin credential (Authorization: Bearer <admin "
                                      "token>)")
        if method == "POST" and path.startswith("/v1/agents/"):
            return self._admin(req)
        if method != "GET":
            return problem(405, f"{method} is not accepted on {path}")
        return self._read(req)

    def check_head(self, req: Request) -> tuple[Response | None, bool]:
        """At the end of the request head, before any body is read: (the refusal, or None;
        whether the request carries a credential that was checked)."""
        s = self.settings
        if req.path in INGEST_PATHS:
            if req.method != "POST":
                return problem(405, f"{req.path} accepts POST"), False
            if not self._ingest_allowed(req):
                return self._unauthorized("an ingest credential"), False
            return None, not s.ingest_open
        if req.path.startswith("/v1/"):
            if not self._admin_allowed(req):
                return self._unauthorized("the admin credential"), False
            return None, s.admin_token is not None
        return None, False

    def _ingest_call(self, req: Request) -> Response | AfterCommit:
        if req.method != "POST":
            return problem(405, f"{req.path} accepts POST")
        if not req.head_checked and not self._ingest_allowed(req):
            return self._unauthorized("an ingest credential (client certificate or "
                                      "Authorization: Bearer <ingest token>)")
        return self._ingest(req, falco=req.path == "/v1/falco")

    def _ingest_allowed(self, req: Request) -> bool:
        s = self.settings
        return s.ingest_open or req.client_cert or (
            s.ingest_token is not None and _bearer(req, s.ingest_token))

    def _admin_allowed(self, req: Request) -> bool:
        """Admin calls and incident reads: only the admin token (never an ingest credential)."""
        token = self.settings.admin_token
        return token is None or _bearer(req, token)

    def _unauthorized(self, needed: str) -> Response:
        self.plane.metrics.rejected.labels("unauthorized").inc()
        return Response(401, orjson.dumps({"error": f"this call needs {needed}"}),
                        headers=[(b"WWW-Authenticate", b'Bearer realm="corral"')])

    def _ingest(self, req: Request, *, falco: bool) -> Response | AfterCommit:
        t0 = time.perf_counter()
        plane = self.plane
        if plane.overloaded():
            plane.metrics.rejected.labels("overloaded").inc()
            return OVERLOADED
        result: IngestResult = plane.ingest_falco(req.body) if falco \
            else plane.ingest_gateway(req.body)
        plane.metrics.ingest.observe(time.perf_counter() - t0)
        if result.rejected:
            resp = json_response(400, {"accepted": result.accepted, "rejected": result.rejected})
        elif result.accepted == 1:
            resp = ACCEPTED_ONE
        else:
            resp = json_response(200, {"accepted": result.accepted})
        if not result.accepted:
            return resp
        return AfterCommit(plane.committed(), resp)  # answered once the events are stored

    def _read(self, req: Request) -> Response:
        plane, path = self.plane, req.path
        if path.startswith("/v1/incidents/"):
            found = plane.store.incident(unquote(path.removeprefix("/v1/incidents/")))
            return json_response(200, found) if found else problem(404, "no such incident")
        reader = self._readers.get(path)
        return reader(req) if reader else problem(404, f"no such path {path}")

    @property
    def _readers(self) -> dict[str, Callable[[Request], Response]]:
        plane = self.plane
        return {
            "/healthz": lambda _: Response(200, b"ok\n", b"text/plain"),
            "/metrics": lambda _: Response(200, plane.metrics.render(),
                                           b"text/plain; version=0.0.4"),
            "/v1/incidents": self._incidents,
            "/v1/agents": lambda _: json_response(200, {"agents": plane.agents()}),
            "/v1/actions": lambda r: json_response(200, {"actions":
                                                         plane.store.actions(r.arg("agent"))}),
            "/v1/sinks": lambda _: json_response(200, {"sinks": plane.sinks()}),
        }

    def _incidents(self, req: Request) -> Response:
        try:
            limit = int(req.arg("limit", "100") or "100")
        except ValueError:
            return problem(400, "limit: expected an integer")
        rows = self.plane.store.incidents(agent=req.arg("agent"), status=req.arg("status"),
                                          limit=max(1, min(limit, 1000)))
        return json_response(200, {"incidents": rows})

    def _admin(self, req: Request) -> Response | Awaitable[Response]:
        parts = req.path.strip("/").split("/")  # v1 agents <name> quarantine|release
        if len(parts) != 4 or parts[3] not in ("quarantine", "release"):
            return problem(404, "expected /v1/agents/<agent>/quarantine or /release")
        agent = unquote(parts[2])
        if agent not in self.plane.selectors:
            return problem(404, f"agent {agent!r} is not in the policy")
        return self._act(parts[3], agent)

    async def _act(self, action: str, agent: str) -> Response:
        plane = self.plane
        results = await (plane.quarantine(agent) if action == "quarantine"
                         else plane.release(agent))
        ok = all(r["ok"] for r in results)
        return json_response(200 if ok else 502, {"agent": agent, "action": action, "ok": ok,
                                                  "steps": results})


class HttpProtocol(asyncio.Protocol):
    """One connection: httptools callbacks collect a request, the router answers it."""

    def __init__(self, router: Router, gate: Gate) -> None:
        self.router = router
        self.gate = gate
        self.max_body = router.settings.max_body
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._client_cert = False
        self._clock = asyncio.get_running_loop().time
        self.busy_since: float | None = None
        self.last_seen = self._clock()
        self._reserved = 0  # body bytes accounted in the gate
        self._refused = False  # answered early: whatever else arrives is dropped
        self._pending: deque[tuple[asyncio.Future[Response] | AfterCommit | Response,
                                   bool]] = deque()
        self._reset()

    def _reset(self) -> None:
        self._req: Request | None = None  # built at the end of the head, body added at the end
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)
        # TLS: called after the handshake; a certificate is only here once the CA verified it
        self._client_cert = bool(transport.get_extra_info("peercert"))
        if not self.gate.admit(self, trusted=self._client_cert):
            self.router.plane.metrics.rejected.labels("too_many_connections").inc()
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gate.leave(self)
        self._unreserve()

    def idle(self) -> bool:
        return not self._pending

    def expire(self, status: int | None) -> None:
        """The gate's verdict: too slow (408) or idle too long (closed quietly)."""
        if self.transport is None or self.transport.is_closing():
            return
        if status is not None:
            self.router.plane.metrics.rejected.labels("timeout").inc()
            self.transport.write(problem(status, "request not received in time")
                                 .encode(keep_alive=False))
        self.transport.close()

    def _unreserve(self) -> None:
        if self._reserved:
            self.gate.release(self._reserved)
            self._reserved = 0

    def data_received(self, data: bytes) -> None:
        self.last_seen = self._clock()
        if self._refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._reset()
        self.busy_since = self._clock()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            self._too_large()
            return
        req = self._req = self._request(b"")
        refusal, authenticated = self.router.check_head(req)
        if refusal is not None:  # answered before any body is buffered
            self._refuse(refusal)
            return
        req.head_checked = True
        if authenticated:
            self.gate.trust(self)

    def on_body(self, body: bytes) -> None:
        if self._refused or self.transport is None or self.transport.is_closing():
            return
        self._size += len(body)
        if self._size > self.max_body:
            self._too_large()
            return
        if not self.gate.reserve(len(body)):
            self.router.plane.metrics.rejected.labels("overloaded").inc()
            self._refuse(OVERLOADED)
            return
        self._reserved += len(body)
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.busy_since = None
        if self._refused or self.transport is None or self.transport.is_closing():
            return
        req = self._req or self._request(b"")
        req.body = b"".join(self._body)
        self._body = []
        self._unreserve()
        self._queue(self.router.handle(req), self.parser.should_keep_alive())

    def _request(self, body: bytes) -> Request:
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        if "://" in path:  # absolute-form target
            path = urlsplit(url).path
        return Request(self.parser.get_method().decode("latin-1"), path,
                       parse_qs(query) if query else {}, self._headers, body, self._client_cert)

    def _refuse(self, resp: Response) -> None:
        """Answer now (after what is already queued) and close: the body is never read."""
        self._unreserve()
        self._refused = True
        self._body = []
        self._queue(resp, keep_alive=False)

    def _queue(self, result: Answer, keep_alive: bool) -> None:
        if isinstance(result, Response) and not self._pending:
            self._write(result, keep_alive)
            return
        if isinstance(result, AfterCommit):
            result.committed.add_done_callback(self._on_done)
            self._pending.append((result, keep_alive))
        elif not isinstance(result, Response):
            fut = asyncio.ensure_future(result)
            fut.add_done_callback(self._on_done)
            self._pending.append((fut, keep_alive))
        else:
            self._pending.append((result, keep_alive))

    def _on_done(self, _: object) -> None:
        self._flush_pending()

    def _flush_pending(self) -> None:
        while self._pending:
            head, keep_alive = self._pending[0]
            if isinstance(head, AfterCommit):
                if not head.committed.done():
                    return
                resp = head.result()
            elif isinstance(head, asyncio.Future):
                if not head.done():
                    return
                exc = head.exception()
                resp = problem(500, "internal error (logged)") if exc else head.result()
                if exc:
                    log.error("admin request failed", exc_info=exc)
            else:
                resp = head
            self._pending.popleft()
            self._write(resp, keep_alive)

    def _write(self, resp: Response, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.last_seen = self._clock()
        self.transport.write(resp.encode(keep_alive))
        if not keep_alive:
            self.transport.close()

    def _too_large(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.router.plane.metrics.rejected.labels("too_large").inc()
        self._fail(413, f"body larger than {self.max_body} bytes")

    def _fail(self, status: int, message: str) -> None:
        if status == 400:
            self.router.plane.metrics.rejected.labels("bad_http").inc()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(problem(status, message).encode(keep_alive=False))
            self.transport.close()


async def serve(router: Router, host: str, port: int) -> asyncio.Server:
    """Listen; the caller owns the returned server (close + wait_closed). Connections are
    bounded by the settings' ``Limits`` (a sweeper task of the plane enforces the timeouts)."""
    loop = asyncio.get_running_loop()
    limits = router.settings.limits
    gate = Gate(limits)
    router.plane.spawn("connection-sweeper", _sweep(gate, min(1.0, limits.header_timeout / 4)))
    return await loop.create_server(
        lambda: HttpProtocol(router, gate), host, port, reuse_address=True,
        ssl=router.settings.tls, backlog=1024,
        ssl_handshake_timeout=limits.header_timeout if router.settings.tls else None)


async def _sweep(gate: Gate, every: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        gate.sweep(loop.time())
