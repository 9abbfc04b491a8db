"""``ClientConnection``: one agent connection, a keep-alive series of requests or one tunnel.

States: HEAD (waiting for a request head) -> SETUP (steps; a task only when a step must wait or
a new upstream must be dialled) -> RELAY (plain HTTP) or PEEK (tunnel, waiting for the TLS
ClientHello) -> TUNNEL; CLOSED at the end. The flow is logged exactly once when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from corral.decide import reasons
from corral.gateway.flow import Flow, Refusal
from corral.gateway.protocol import responses
from corral.gateway.protocol.http import (
    LAST_CHUNK,
    Body,
    End,
    Event,
    ProtocolError,
    RequestHead,
    RequestReader,
    ResponseReader,
    Tunnel,
    chunk,
    looks_like_request,
    parse_target,
    upstream_request,
)
from corral.gateway.protocol.tls import ACCESS_DENIED_ALERT, MAX_HELLO, Hello
from corral.gateway.server.upstream import PoolKey, Upstream, const
from corral.gateway.steps import decide as decide_step

if TYPE_CHECKING:
    from corral.gateway.server.listeners import Gateway

log = logging.getLogger("corral.gateway")

HEAD, SETUP, RELAY, PEEK, TUNNEL, CLOSED = range(6)
Wall = Callable[[], float]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # retried once on a stale pooled connection


class ClientConnection(asyncio.Protocol):
    """One agent connection: a keep-alive series of plain HTTP requests, or one tunnel."""

    __slots__ = ("client", "client_eof", "counted", "flow", "gw", "head_since", "inner", "paused",
                 "peek", "port", "pumping", "queue", "reader", "req_done", "resp", "reused",
                 "seen", "state", "task", "transport", "up")

    def __init__(self, gw: Gateway, port: int) -> None:
        self.gw = gw
        self.port = port
        lim = gw.snapshot.limits
        self.reader: RequestReader | None = RequestReader(lim.header_bytes, lim.headers)
        self.queue: list[Event] = []  # a list: tiny, and 10,000 idle deques cost 6 MB
        self.state = HEAD
        self.flow: Flow | None = None
        self.up: Upstream | None = None
        self.resp: ResponseReader | None = None
        self.task: asyncio.Task[None] | None = None
        self.peek = b""
        self.req_done = False
        self.reused = False
        self.paused = False
        self.pumping = False
        self.client_eof = False  # the client half-closed after a complete request
        self.counted = False  # admitted under the connection caps (``Gateway.admit``)
        self.inner: bytes | None = None  # http://authority of a CONNECT that carries plain HTTP
        self.seen = gw.tick
        # the header deadline runs from the first byte of a head (from accept for the first
        # request): CRLFs or a trickled head never move it
        self.head_since: int | None = gw.tick
        self.client = ""
        self.transport: asyncio.Transport | None = None

    # -- asyncio Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if peer:
            host = f"[{peer[0]}]" if ":" in peer[0] else peer[0]
            self.client = f"{host}:{peer[1]}"
        if not self.gw.admit(self.port):
            self._over_cap()
            return
        self.counted = True
        self.gw.conns.add(self)

    def data_received(self, data: bytes) -> None:
        self.seen = self.gw.tick
        state = self.state
        if state == TUNNEL:
            self._to_upstream(data)
        elif state == PEEK:
            self.peek += data
            self._check_hello()
        elif self.reader is None or self.reader.upgraded:
            self.peek += data  # tunnel bytes sent before the 200: kept for the SNI check
            if state == SETUP:
                self.pause_client()  # at most one read buffered until the tunnel is open
        else:
            if state == HEAD and self.head_since is None:
                self.head_since = self.gw.tick
            try:
                events = self.reader.feed(data)
            except ProtocolError as exc:
                self._protocol_error(exc)
                return
            if events:
                self.queue.extend(events)
                self._pump()
            if self.state == SETUP and (state == SETUP or self._holds_bytes()):
                # bytes beyond the head arrived while the upstream is set up: buffer this read
                # only, and read no EOF before them (a client may half-close after sending)
                self.pause_client()

    def eof_received(self) -> bool:
        if self.state == TUNNEL and self.up is not None and self.up.transport:
            if self.up.transport.can_write_eof():
                self.up.transport.write_eof()
            return True  # half-close: let the destination finish its answer
        if self.state in (SETUP, RELAY) and (self.req_done or any(
                isinstance(e, End) for e in self.queue)):
            self.client_eof = True
            return True  # half-close after a complete request: answer it, then close
        self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self.gw.release(self.port)
        self.gw.conns.discard(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._close()

    def pause_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.resume_reading()

    def pause_client(self) -> None:
        if self.transport is not None and self.state != CLOSED and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_client(self) -> None:
        if self.paused and self.transport is not None and self.state in (HEAD, RELAY, PEEK,
                                                                          TUNNEL):
            self.paused = False
            self.transport.resume_reading()

    # -- request heads
    def _pump(self) -> None:
        if self.pumping:  # re-entered from a request finished synchronously: the loop goes on
            return
        self.pumping = True
        try:
            self._pump_events()
        finally:
            self.pumping = False

    def _pump_events(self) -> None:
        queue = self.queue
        while queue:
            event = queue[0]
            state = self.state
            if state == HEAD:
                queue.pop(0)
                if isinstance(event, RequestHead):
                    self._start(event)
            elif state == RELAY and isinstance(event, Body):
                queue.pop(0)
                self._to_upstream(chunk(event.data) if self._chunked() else event.data)
            elif state == RELAY and isinstance(event, End):
                queue.pop(0)
                self.req_done = True
                if self._chunked():
                    self._to_upstream(LAST_CHUNK)
            else:
                if state == RELAY:
                    self.pause_client()  # a pipelined request waits for this response
                return

    def _holds_bytes(self) -> bool:
        """Client bytes beyond the head being set up are queued (body, next request, tunnel)."""
        return any(not isinstance(e, End) and not (isinstance(e, Tunnel) and not e.rest)
                   for e in self.queue)

    def _chunked(self) -> bool:
        return self.flow is not None and self.flow.head is not None and self.flow.head.chunked

    def _start(self, head: RequestHead) -> None:
        self.state = SETUP
        self.head_since = None
        if self.inner is not None:  # inside a CONNECT to an HTTP port: origin-form only
            if head.method == "CONNECT" or not head.target.startswith(b"/"):
                self._protocol_error(ProtocolError(
                    400, reasons.BAD_REQUEST, "inside a tunnel a request names a /path"))
                return
            head.target = self.inner + head.target
        flow = Flow(self.gw.snapshot, self.port, self.client, head,
                    started=time.perf_counter(), wall=self.gw.wall())
        self.flow = flow
        self.req_done = not head.has_body
        try:
            verdict = self.gw.pipeline.request(flow)
        except Exception:
            log.exception("gateway: internal error in a step for %s", flow.host)
            verdict = Refusal(502, reasons.UPSTREAM_FAILED, None, "internal error", deny=False)
        if isinstance(verdict, Refusal):
            self._refuse(flow, verdict)
        elif verdict is None and flow.kind == "http" and self._from_pool(flow):
            self._relay_http(flow)  # every step ran synchronously; a pooled upstream is ready
        else:
            # the client is paused only if it sends more before the setup ends (data_received):
            # most clients wait for the answer, and pausing costs two epoll_ctl calls
            self.task = asyncio.get_running_loop().create_task(self._setup(flow, verdict))

    async def _setup(self, flow: Flow, pending: Awaitable[Refusal | None] | None) -> None:
        try:
            refusal = await pending if pending is not None else None
            if refusal is None and self.state != CLOSED:  # no dial for a client already gone
                refusal = await self._dial(flow)
        except Exception:
            log.exception("gateway: internal error while setting up %s", flow.host)
            refusal = Refusal(502, reasons.UPSTREAM_FAILED, None, "internal error", deny=False)
        self.task = None
        if self.state == CLOSED:
            if self.up is not None:
                self.up.close()
            self.gw.pipeline.done(flow)
        elif refusal is not None:
            self._refuse(flow, refusal)
        elif flow.kind == "connect":
            self._open_tunnel(flow)
        else:
            self._relay_http(flow)

    def _pool_key(self, flow: Flow) -> PoolKey:
        return (flow.agent, flow.host, flow.resolved or "", flow.port)

    def _from_pool(self, flow: Flow) -> bool:
        """Reuse an idle upstream, only for a bodiless safe request: if the origin closed it
        meanwhile, such a request is retried on a new connection; anything else gets a new one."""
        head = flow.head
        if head is None or head.has_body or head.method not in SAFE_METHODS or head.upgrade:
            return False
        for addr in flow.addrs:
            up = self.gw.pool.take((flow.agent, flow.host, addr, flow.port))
            if up is not None:
                up.attach(self)
                flow.resolved = addr
                self.up = up
                self.reused = True
                return True
        return False

    async def _dial(self, flow: Flow, *, pooled: bool = True) -> Refusal | None:
        self.reused = False
        if pooled and flow.kind == "http" and self._from_pool(flow):
            return None
        loop = asyncio.get_running_loop()
        timeout = flow.snap.limits.connect_timeout_s
        problem = "no address"
        for addr in flow.addrs:
            up = Upstream(self, self.gw.pool)
            try:
                async with asyncio.timeout(timeout):
                    await loop.create_connection(const(up), addr, flow.port)
            except TimeoutError:
                problem = f"connect to {addr} port {flow.port} timed out"
                continue
            except OSError as exc:
                problem = f"connect to {addr} port {flow.port} failed: {exc.strerror or exc}"
                continue
            flow.resolved = addr
            self.up = up
            return None
        flow.resolved = flow.addrs[0] if flow.addrs else None
        return Refusal(502, reasons.UPSTREAM_FAILED, None, problem, deny=False)

    # -- refusals
    def _refuse(self, flow: Flow, refusal: Refusal) -> None:
        flow.refuse(refusal)
        head = flow.head
        keep = (flow.kind == "http" and head is not None and head.keep_alive
                and self.req_done and refusal.status < 500 and not self.gw.draining)
        if self.transport is None:
            pass
        elif self.state == PEEK:  # the tunnel was answered 200: refuse the TLS handshake
            if self.peek.startswith(b"\x16"):
                self.transport.write(ACCESS_DENIED_ALERT)
        else:
            text = responses.refusal_text(agent=flow.agent, host=flow.host, port=flow.port,
                                          reason=refusal.reason, rule=flow.rule,
                                          detail=refusal.detail)
            self.transport.write(responses.refusal(refusal.status, text, refusal.reason,
                                                   keep_alive=keep,
                                                   retry_after=refusal.retry_after))
        self._end_flow()
        if keep:
            self._next()
        else:
            self._close()

    def _over_cap(self) -> None:
        """Refused at accept: the agent (or the process) holds its maximum of connections."""
        self.state = SETUP
        self.flow = Flow(self.gw.snapshot, self.port, self.client, None,
                         started=time.perf_counter(), wall=self.gw.wall())
        self._refuse(self.flow, Refusal(503, reasons.CONNECTION_LIMIT, "connections"))

    def _protocol_error(self, exc: ProtocolError) -> None:
        flow = Flow(self.gw.snapshot, self.port, self.client, exc.head,
                    started=time.perf_counter(), wall=self.gw.wall())
        if exc.head is not None:  # a head refused as a whole: log where it wanted to go
            with contextlib.suppress(ProtocolError):
                target = parse_target(exc.head)
                flow.host, flow.port, flow.path = target.host, target.port, target.path
        self.state = SETUP
        if self.flow is not None:  # a broken body of a request being relayed
            self._close()
            return
        self.flow = flow
        self._refuse(flow, Refusal(exc.status, exc.reason, None, exc.message))

    # -- plain HTTP
    def _relay_http(self, flow: Flow) -> None:
        assert flow.head is not None and flow.target is not None and self.up is not None
        self.resp = self.up.response_reader(flow.head.method == "HEAD", flow.head.keep_alive)
        self.resp.upgrade = flow.head.upgrade
        self.state = RELAY
        self.up.go_live()
        self._to_upstream(upstream_request(flow.head, flow.target))
        self.resume_client()
        self._pump()

    def from_upstream(self, data: bytes) -> None:
        self.seen = self.gw.tick
        flow = self.flow
        if flow is None or self.transport is None or self.state == CLOSED:
            return
        if self.state != RELAY:
            flow.bytes_down += len(data)
            self.transport.write(data)
            return
        assert self.resp is not None
        try:
            out = self.resp.feed(data)
        except ProtocolError as exc:
            self._upstream_broken(flow, exc)
            return
        flow.bytes_down += len(out)
        self.transport.write(out)
        if self.resp.switched:
            self._switched(flow)
        elif self.resp.done:
            self._http_done(flow)

    def _upstream_broken(self, flow: Flow, exc: ProtocolError) -> None:
        if self.resp is not None and self.resp.status == 0:
            self._drop_upstream()
            self.req_done = False  # the answer is a refusal: do not reuse the connection
            self._refuse(flow, Refusal(exc.status, exc.reason, None, exc.message, deny=False))
        else:
            self._close()

    def _switched(self, flow: Flow) -> None:
        """The origin accepted the WebSocket upgrade (101, already written to the client):
        from now on bytes go both ways, counted, and the flow is logged when it closes."""
        flow.status = 101
        self.resp = None
        rest = b"".join(e.rest for e in self.queue if isinstance(e, Tunnel))
        self.queue.clear()
        data, self.peek = rest + self.peek, b""
        self.reader = None
        flow.head = None
        self.state = TUNNEL
        self.resume_client()
        if data:
            self._to_upstream(data)

    def _http_done(self, flow: Flow) -> None:
        assert self.resp is not None
        flow.status = self.resp.status
        head = flow.head
        # a refused upgrade: the client may not know what comes next, and the reader is spent
        keep = (self.resp.keep_alive and self.req_done and not self.gw.draining
                and (head is None or not head.upgrade))
        if (self.resp.reusable and self.req_done and not self.gw.draining and self.up is not None
                and head is not None and not head.has_body):
            # after a request body the origin may not have read it all (it answered early):
            # the leftover would be read as the next request, so such connections are closed
            up, self.up, self.resp = self.up, None, None
            self.gw.pool.put(self._pool_key(flow), up, self.gw.tick)
        self._drop_upstream()
        self._end_flow()
        if keep:
            self._next()
        else:
            self._close()

    def upstream_closed(self, up: Upstream) -> None:
        if up is not self.up or self.flow is None:
            return
        flow = self.flow
        if self.state == RELAY and self.resp is not None:
            if self._stale_reuse(up, flow):
                return
            if self.resp.eof():
                self._http_done(flow)
            else:
                self._upstream_broken(flow, ProtocolError(
                    502, reasons.UPSTREAM_FAILED, "the destination closed without a response"))
        elif self.state == SETUP:
            return  # not used yet (closed before relaying); the setup task will notice
        else:
            self._close()

    def _stale_reuse(self, up: Upstream, flow: Flow) -> bool:
        """A pooled connection the origin had closed: send the request again on a new one."""
        head = flow.head
        if (not self.reused or up.received or head is None or head.has_body
                or head.method not in SAFE_METHODS):
            return False
        self._drop_upstream()
        self.state = SETUP
        self.pause_client()
        self.task = asyncio.get_running_loop().create_task(self._redial(flow))
        return True

    async def _redial(self, flow: Flow) -> None:
        refusal = await self._dial(flow, pooled=False)
        self.task = None
        if self.state == CLOSED:
            if self.up is not None:
                self.up.close()
        elif refusal is not None:
            self._refuse(flow, refusal)
        else:
            self._relay_http(flow)

    def _drop_upstream(self) -> None:
        up, self.up, self.resp = self.up, None, None
        if up is not None:
            up.close()

    # -- tunnels
    def _open_tunnel(self, flow: Flow) -> None:
        assert self.transport is not None and self.up is not None
        flow.status = 200
        self.transport.write(responses.CONNECT_OK)
        rest = b""
        while self.queue:
            event = self.queue.pop(0)
            if isinstance(event, Tunnel):
                rest = event.rest
        self.peek = rest + self.peek
        self.reader = None
        flow.head = None  # the log needs none of it: keep idle tunnels small
        self.state = PEEK
        self.head_since = self.gw.tick
        self.up.go_live()
        self.resume_client()
        self._check_hello()

    def _check_hello(self) -> None:
        flow = self.flow
        assert flow is not None
        peek = self.peek
        if flow.http_only or peek[:1].isupper():  # plain HTTP inside starts with a method
            http = looks_like_request(peek)
            if http is None:
                return
            if http and decide_step.allows_http(flow):
                self._http_inside(flow)
                return
            if flow.http_only:
                self._refuse(flow, Refusal(403, reasons.PORT_NOT_ALLOWED, flow.rule,
                                           "only plain HTTP may use this port"))
                return
        verdict = self.gw.pipeline.hello(flow, self.peek)
        if isinstance(verdict, Hello):
            if len(self.peek) > MAX_HELLO:
                self._refuse(flow, Refusal(403, reasons.SNI_MISSING, "sni_check"))
            return
        if isinstance(verdict, Refusal):
            self._refuse(flow, verdict)
            return
        data, self.peek = self.peek, b""
        self.state = TUNNEL
        self.head_since = None
        if data:
            self._to_upstream(data)

    def _http_inside(self, flow: Flow) -> None:
        """The tunnel carries plain HTTP to an HTTP port: from now on the connection is a
        keep-alive series of plain requests to the CONNECT authority, each decided and logged
        as plain HTTP (no SNI check); the CONNECT itself is not logged."""
        assert flow.target is not None
        host = flow.target.host
        host = f"[{host}]" if ":" in host else host
        self.inner = f"http://{host}:{flow.target.port}".encode("latin-1")
        flow.carrier = True
        self._drop_upstream()
        self._end_flow()
        data, self.peek = self.peek, b""
        lim = self.gw.snapshot.limits
        self.reader = RequestReader(lim.header_bytes, lim.headers)
        self.queue.clear()
        self.state = HEAD
        self.head_since = self.gw.tick
        self.data_received(data)

    def _to_upstream(self, data: bytes) -> None:
        flow, up = self.flow, self.up
        if flow is None or up is None or up.transport is None:
            return
        flow.bytes_up += len(data)
        limits = flow.limits
        if limits is not None and limits.quota is not None and limits.quota.spend(len(data)):
            flow.reason = reasons.QUOTA_EXCEEDED
            flow.rule = "quota"
            self._close()
            return
        up.transport.write(data)

    # -- endings
    def _end_flow(self) -> None:
        flow, self.flow = self.flow, None
        if flow is not None:
            self.gw.pipeline.done(flow)

    def _next(self) -> None:
        """Back to waiting for the next request head on a keep-alive connection."""
        if self.gw.draining:
            self._close()
            return
        self.state = HEAD
        reader = self.reader
        self.head_since = self.gw.tick if reader is not None and reader.in_head else None
        self.seen = self.gw.tick
        self.resume_client()
        self._pump()
        if self.client_eof and self.state == HEAD:
            self._close()  # every request sent before the half-close is answered

    def _close(self) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self._drop_upstream()
        self._end_flow()
        if self.transport is not None:
            self.transport.close()

    def cut(self, reason: str) -> None:
        if self.flow is not None:
            self.flow.reason = reason
        self._close()

    def abort(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.abort()
        self._close()
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> None:
        if self.state == HEAD and self.head_since is None:
            self._close()

    def expire(self, tick: int, header_ticks: int, idle_ticks: int) -> None:
        state = self.state
        if state == HEAD:
            if self.head_since is not None and tick - self.head_since > header_ticks:
                self._protocol_error(ProtocolError(
                    408, reasons.BAD_REQUEST, "request head not received in time"))
            elif self.head_since is None and tick - self.seen > idle_ticks:
                self._close()
        elif state == PEEK and self.head_since is not None and self.flow is not None:
            if tick - self.head_since > header_ticks:
                self._refuse(self.flow, Refusal(403, reasons.SNI_MISSING, "sni_check",
                                                "no TLS ClientHello in time"))
        elif state in (RELAY, TUNNEL) and tick - self.seen > idle_ticks:
            self._close()
