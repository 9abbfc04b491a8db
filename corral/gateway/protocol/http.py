"""HTTP/1.1 proxy requests and upstream responses as events, parsed by httptools (llhttp). Sans-io.

``RequestReader.feed(bytes)`` returns events in order: ``RequestHead``, ``Body``, ``End`` and, for
CONNECT, ``Tunnel`` carrying the bytes the client sent after the head. Limits on head size and
header count raise ``ProtocolError`` (431), malformed input raises it with 400. ``parse_target``
turns a head into the destination (host, port, origin-form path) and enforces that an absolute
URI and its Host header agree. ``ResponseReader`` re-frames an upstream response for the client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import httptools

from corral.decide import reasons

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
    b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    b"http2-settings",  # goes with Upgrade: h2c, which the gateway drops
})
# framing and routing: never hop-by-hop, so a Connection header naming one is refused (a proxy
# that dropped Content-Length but forwarded the body would hand the origin a second request)
NEVER_HOP = frozenset({b"content-length", b"transfer-encoding", b"host"})
VERSIONS = frozenset({"1.1", "1.0"})  # HTTP/0.9 (no version) and 2.0+ are not HTTP/1 requests


_SPACE = re.compile(r"\s")
_METHOD = re.compile(rb"[A-Z]{1,20}( )?")


def looks_like_request(data: bytes) -> bool | None:
    """Do the first bytes inside a tunnel start an HTTP request line (a method, a space)?
    None while only capital letters arrived."""
    m = _METHOD.match(data)
    if m is None:
        return None if not data else False
    if m.group(1):
        return True
    return None if m.end() == len(data) < 21 else False


class ProtocolError(Exception):
    """The request cannot be served; ``status`` and ``reason`` go into the reply and the log."""

    def __init__(self, status: int, reason: str, message: str,
                 head: RequestHead | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.head = head  # the refused request, when its head was parsed (for the log line)


@dataclass(slots=True)
class RequestHead:
    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    chunked: bool
    has_body: bool
    size: int
    content_length: int = 0
    hosts: tuple[bytes, ...] = ()  # values of every Host header, as sent
    # filled while parsing, for ``upstream_request``: the header lines that may go upstream
    # (no hop-by-hop, Proxy-*, Host or Content-Length: framing is rebuilt from what was
    # parsed), their lower-cased names, and the names the Connection header lists (dropped too)
    forward: list[bytes] = field(default_factory=list)
    forward_names: list[bytes] = field(default_factory=list)
    connection_names: list[bytes] = field(default_factory=list)
    framed: bool = False  # a Content-Length header was sent (its value is ``content_length``)
    upgrade: bytes = b""  # the Upgrade protocol asked with Connection: upgrade (lower case)


@dataclass(slots=True)
class Body:
    data: bytes


@dataclass(slots=True)
class End:
    pass


@dataclass(slots=True)
class Tunnel:
    """CONNECT head is complete; ``rest`` is whatever the client already sent after it."""

    rest: bytes


Event = RequestHead | Body | End | Tunnel
_END = End()


class RequestReader:
    """Feed client bytes, get request events. One per client connection (keep-alive aware)."""

    __slots__ = ("_bad", "_events", "_fwd", "_fwd_names", "_headers", "_hosts", "_length",
                 "_max_bytes", "_max_headers", "_named", "_over", "_parser", "_pending",
                 "_proto", "_size", "_te", "_url", "in_body", "in_head", "upgraded")

    def __init__(self, max_header_bytes: int, max_headers: int) -> None:
        self._max_bytes = max_header_bytes
        self._max_headers = max_headers
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._hosts: list[bytes] = []
        self._fwd: list[bytes] = []
        self._fwd_names: list[bytes] = []
        self._named: list[bytes] = []
        self._url = b""
        self._size = 0
        self._pending = 0
        self._te: bytes | None = None  # the Transfer-Encoding value
        self._length = b""
        self._proto = b""
        self._bad = ""  # 400 pending: a head llhttp accepts that the gateway does not relay
        self._over = 0  # 431 pending: 1 head too large, 2 too many headers
        self.in_head = False  # some bytes of a head arrived, the head is not complete yet
        self.in_body = False  # the head is complete, the body is not
        self.upgraded = False

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = []
        self._hosts = []
        self._fwd = []
        self._fwd_names = []
        self._named = []
        self._url = b""
        self._size = 0
        self._te = None
        self._length = b""
        self._proto = b""
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._size += len(url)
        if self._size > self._max_bytes:
            self._over = 1

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._size += len(name) + len(value) + 4
        if self._size > self._max_bytes:
            self._over = 1
        if len(self._headers) > self._max_headers:
            self._over = 2
        low = name.lower()
        if low == b"host":
            self._hosts.append(value)
            return
        if low in HOP_BY_HOP:
            if low == b"transfer-encoding":
                self._te = b"," if self._te is not None else value  # twice: refused
            elif low == b"connection":
                self._named.extend(t.strip().lower() for t in value.split(b","))
            elif low == b"upgrade":
                self._proto = value.strip().lower()
            return
        if low == b"content-length":
            self._length = value  # llhttp refuses a second one, a list, a sign, an overflow
            return
        if low.startswith(b"proxy-"):
            return
        self._fwd.append(name + b": " + value + b"\r\n")
        self._fwd_names.append(low)

    def on_headers_complete(self) -> None:
        p = self._parser
        self.in_head = False
        self.in_body = True
        self._pending = 0
        keep_alive = p.should_keep_alive()
        if not keep_alive and p.get_http_version() not in VERSIONS:  # 1.1 keeps alive by default
            self._bad = "an HTTP/1.1 request line ends with the version (HTTP/1.1)"
        te = self._te
        chunked = te is not None
        if te is not None and te.strip().lower() != b"chunked":
            self._bad = "only Transfer-Encoding: chunked is relayed, once"
        if self._named and not NEVER_HOP.isdisjoint(self._named):
            self._bad = "the Connection header may not name Content-Length, Transfer-Encoding " \
                        "or Host"
        length = self._length.strip()
        size = int(length) if length else 0  # llhttp accepted it: digits only
        self._events.append(RequestHead(
            method=p.get_method().decode("ascii", "replace"), target=self._url,
            headers=self._headers, keep_alive=keep_alive, chunked=chunked,
            has_body=chunked or size > 0, size=self._size, content_length=size,
            hosts=tuple(self._hosts), forward=self._fwd, forward_names=self._fwd_names,
            connection_names=self._named, framed=bool(length),
            upgrade=self._proto if self._proto and b"upgrade" in self._named else b""))

    def on_body(self, body: bytes) -> None:
        self._events.append(Body(body))

    def on_message_complete(self) -> None:
        self.in_body = False
        self._events.append(_END)

    # -- feeding
    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; events for every complete piece. Raises ``ProtocolError``."""
        if self.upgraded:
            raise ProtocolError(400, reasons.BAD_REQUEST, "data after a tunnel request")
        events: list[Event] = []
        self._events = events
        if not self.in_head and not self.in_body and not data.strip(b"\r\n"):
            return events  # CRLFs between requests (inside a body they are data)
        self._pending += len(data)
        for _ in range(64):  # each turn ends a request that dropped an optional h2c upgrade
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                data = data[int(exc.args[0]):]
                if self._upgrade(data):
                    return events
                continue
            except httptools.HttpParserError as exc:
                self._check_limits()
                raise ProtocolError(400, reasons.BAD_REQUEST,
                                    f"malformed HTTP request: {exc}") from None
            break
        else:
            raise ProtocolError(400, reasons.BAD_REQUEST, "too many h2c upgrade requests at once")
        self._check_limits()
        if self._bad:
            raise ProtocolError(400, reasons.BAD_REQUEST, self._bad)
        return events

    def _check_limits(self) -> None:
        if self.in_head and self._pending > self._max_bytes:
            self._over = self._over or 1
        if self._over == 1:
            raise ProtocolError(431, reasons.BAD_REQUEST,
                                f"request head larger than {self._max_bytes} bytes")
        if self._over == 2:
            raise ProtocolError(431, reasons.BAD_REQUEST,
                                f"more than {self._max_headers} request headers")

    def _upgrade(self, rest: bytes) -> bool:
        """llhttp stopped after a CONNECT or an ``Upgrade`` request. True: ``rest`` belongs to a
        tunnel (CONNECT, WebSocket), a ``Tunnel`` event carries it. False: the optional h2c
        upgrade was dropped and ``rest`` is HTTP/1.1 again, for a fresh parser (llhttp stays
        paused after an upgrade)."""
        self._check_limits()
        if self._bad:
            raise ProtocolError(400, reasons.BAD_REQUEST, self._bad)
        events = self._events
        head = next((e for e in reversed(events) if isinstance(e, RequestHead)), None)
        if head is None:
            raise ProtocolError(400, reasons.BAD_REQUEST, "protocol upgrade without a request")
        if head.method == "CONNECT":
            if events and isinstance(events[-1], End):
                events.pop()
            head.upgrade = b""
        elif head.upgrade == b"h2c":
            head.upgrade = b""  # optional: the client goes on in HTTP/1.1 when not upgraded
            self._parser = httptools.HttpRequestParser(self)
            self.in_body = False
            return False
        elif head.upgrade != b"websocket":
            raise ProtocolError(400, reasons.BAD_REQUEST,
                                f"Upgrade {head.upgrade.decode('latin-1')[:40]!r} is not relayed "
                                "(only websocket; use CONNECT for anything else)", head)
        self.upgraded = True
        events.append(Tunnel(rest))
        return True


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request wants to go, as the agent spelled it (decide normalises ``host``)."""

    kind: Literal["connect", "http"]
    host: str
    port: int
    path: str | None = None  # origin-form path + query (plain HTTP only)


def split_authority(text: str, default_port: int | None) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` -> (host, port); ValueError on anything else."""
    if "@" in text or "/" in text or not text or _SPACE.search(text):
        raise ValueError(f"{text!r} is not host:port")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
        if not sep or (rest and port_text is None):
            raise ValueError(f"{text!r} is not [address]:port")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" not in text:
        host, port_text = text, None
    else:
        raise ValueError(f"{text!r}: IPv6 addresses must be in brackets")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{text!r} has no port")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: port must be 1-65535")
    if not host:
        raise ValueError(f"{text!r} has no host")
    return host, int(port_text)


def _bad(message: str, reason: str = reasons.BAD_REQUEST) -> ProtocolError:
    return ProtocolError(400, reason, message)


def parse_target(head: RequestHead) -> Target:
    """The destination of a proxy request; ``ProtocolError`` (400) when it is not one."""
    raw = head.target.decode("latin-1")
    if head.method == "CONNECT":
        try:
            host, port = split_authority(raw, None)
        except ValueError as exc:
            raise _bad(f"CONNECT needs host:port ({exc})") from None
        return Target("connect", host, port)
    try:
        url = httptools.parse_url(head.target)
    except httptools.HttpParserInvalidURLError:
        raise _bad(f"invalid request target {raw[:200]!r}") from None
    if url.schema is None or url.host is None:
        raise _bad("a proxy request needs an absolute URI (http://host/path)")
    if url.schema.lower() not in (b"http", b"ws"):  # ws:// is how clients spell a WebSocket
        raise _bad("only http:// URIs are proxied; use CONNECT for https")
    host = url.host.decode("latin-1")
    port = 80 if url.port is None else url.port
    if not 0 < port < 65536:  # ":0" must not fall back to the default port
        raise _bad(f"invalid port {port} in {raw[:200]!r}: expected 1-65535")
    path = (url.path or b"/").decode("latin-1")
    if url.query is not None:
        path += "?" + url.query.decode("latin-1")
    _check_host_header(head, host, port)
    return Target("http", host, port, path)


def _canonical(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _check_host_header(head: RequestHead, host: str, port: int) -> None:
    values = head.hosts
    if len(values) > 1:
        raise _bad("more than one Host header", reasons.HOST_MISMATCH)
    if not values:
        return
    text = values[0].decode("latin-1").strip()
    if text == (host if port == 80 else f"{host}:{port}"):
        return  # the common case, exactly as the URI spells it
    try:
        h_host, h_port = split_authority(text, 80)
    except ValueError as exc:
        raise _bad(f"invalid Host header ({exc})", reasons.HOST_MISMATCH) from None
    if _canonical(h_host) != _canonical(host) or h_port != port:
        raise _bad(f"Host header {text!r} differs from the URI host {host}:{port}",
                   reasons.HOST_MISMATCH)


def upstream_request(head: RequestHead, target: Target) -> bytes:
    """The request head sent upstream: origin-form, hop-by-hop and Proxy-* headers removed.

    The header lines were sorted while parsing (``RequestHead.forward``); only headers the
    Connection header names are filtered here. Host and the body framing are rebuilt from what
    the parser used (the URI, ``chunked``, ``content_length``), never copied from the client."""
    lines = head.forward
    if head.connection_names:
        named = set(head.connection_names)
        lines = [line for low, line in zip(head.forward_names, lines, strict=True)
                 if low not in named]
    host = f"[{target.host}]" if ":" in target.host else target.host
    authority = host if target.port == 80 else f"{host}:{target.port}"
    start = f"{head.method} {target.path} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")
    # HTTP/1.1 upstream: persistent unless the origin says otherwise
    if head.upgrade:
        end = b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"  # only one relayed
    elif head.chunked:
        end = b"Transfer-Encoding: chunked\r\n\r\n"
    elif head.framed:
        end = b"Content-Length: %d\r\n\r\n" % head.content_length
    else:
        end = b"\r\n"
    return start + b"".join(lines) + end


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


class ResponseReader:
    """Re-frames one upstream response for the client: head rebuilt, body passed through.

    ``feed`` returns bytes to write to the client; ``done`` turns true when the final response
    is complete; ``keep_alive`` says whether the client connection may carry another request,
    ``reusable`` whether the upstream connection may (clean end, origin keeps it alive).
    """

    __slots__ = ("_chunked", "_framed", "_headers", "_length", "_out", "_parser", "_proto",
                 "_reason", "done", "head_only", "keep_alive", "reusable", "status", "switched",
                 "upgrade")

    def __init__(self, head_only: bool, keep_alive: bool = True) -> None:
        self.head_only = head_only  # a HEAD request: the response has no body whatever it says
        self.keep_alive = keep_alive
        self.done = False
        self.reusable = False
        self.status = 0
        self._out: list[bytes] = []
        self._headers: list[bytes] = []
        self._reason = b""
        self._chunked = False
        self._length = False
        self._framed = False
        self._proto = b""
        self.upgrade = b""  # the protocol the request asked for (websocket): a 101 may switch
        self.switched = False  # the origin answered 101: the connection is a tunnel now
        self._parser = httptools.HttpResponseParser(self)

    def reset(self, head_only: bool, keep_alive: bool = True) -> None:
        """Read the next response on the same (reusable) upstream connection: the parser
        stopped cleanly at the end of the previous one, so it is kept."""
        self.head_only = head_only
        self.keep_alive = keep_alive
        self.done = False
        self.reusable = False
        self.status = 0
        self._framed = False
        self.upgrade = b""

    def on_message_begin(self) -> None:
        if self.done:  # bytes after the final response: never reuse this connection
            self.reusable = False
            raise ProtocolError(502, reasons.UPSTREAM_FAILED, "data after the response")
        self._headers = []
        self._reason = b""
        self._chunked = self._length = False

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        if low in HOP_BY_HOP:
            if low == b"transfer-encoding":
                self._chunked = self._chunked or b"chunked" in value.lower()
            elif low == b"upgrade":
                self._proto = value.strip().lower()
            return
        if low.startswith(b"proxy-"):
            return
        if low == b"content-length":
            self._length = True
        self._headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status == 101:
            return  # written by ``_switch`` if the request asked for this upgrade, else a 502
        no_body = self.head_only or status in (204, 304) or status < 200
        self._framed = no_body or self._chunked or self._length
        if status >= 200:
            self.status = status
            self.keep_alive = self.keep_alive and self._framed
        self._out.append(self._head(status))
        if self.head_only and status >= 200:
            self.done = True

    def _head(self, status: int) -> bytes:
        tail = (b"Transfer-Encoding: chunked\r\n" if self._chunked else b"") + (
            b"Connection: keep-alive\r\n\r\n" if self.keep_alive else b"Connection: close\r\n\r\n")
        return b"HTTP/1.1 %d %b\r\n%b%b" % (status, self._reason, b"".join(self._headers), tail)

    def on_body(self, body: bytes) -> None:
        self._out.append(chunk(body) if self._chunked else body)

    def on_message_complete(self) -> None:
        if self._chunked:
            self._out.append(LAST_CHUNK)
        if self.status >= 200:
            self.done = True
            self.reusable = self._parser.should_keep_alive()

    def feed(self, data: bytes) -> bytes:
        """Client-bound bytes for ``data``; ``ProtocolError`` (502) on a broken response."""
        self._out = []
        if self.done:
            self.reusable = False
            return b""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            return self._switch(data[int(exc.args[0]):])
        except httptools.HttpParserError as exc:
            if self.done:
                self.reusable = False
                return b"".join(self._out)
            raise ProtocolError(502, reasons.UPSTREAM_FAILED,
                                f"invalid response from upstream: {exc}") from None
        return b"".join(self._out)

    def _switch(self, rest: bytes) -> bytes:
        """The origin answered 101: relayed when it switched to the protocol asked for."""
        if not self.upgrade or self._proto != self.upgrade:
            raise ProtocolError(502, reasons.UPSTREAM_FAILED,
                                "the destination switched protocols (101) unasked; the gateway "
                                "relays only a WebSocket upgrade the client asked for")
        self.switched = self.done = True
        self.status = 101
        self.keep_alive = self.reusable = False
        head = b"HTTP/1.1 101 %b\r\n%bConnection: Upgrade\r\nUpgrade: %b\r\n\r\n" % (
            self._reason, b"".join(self._headers), self.upgrade)
        return b"".join(self._out) + head + rest

    def eof(self) -> bool:
        """Upstream closed: True when that ended the response cleanly (close-delimited body)."""
        if self.done:
            return True
        if self.status >= 200 and not self._framed:
            self.done = True
            self.keep_alive = False
            return True
        return False
