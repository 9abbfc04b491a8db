"""Request smuggling against ``corral gateway``: every shape is refused with 400 before anything
is dialled, or relayed with framing rebuilt from what the gateway parsed. The proof is on the
origin's side: a real socket that records raw bytes and parses them strictly never sees a second
request (``/smuggled``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from corral.decide import reasons
from corral.gateway.testing import GatewayProcess
from corral.model import records as R
from tests.gateway.helpers import agent, make_policy, raw
from tests.security.conftest import StartGateway, assert_no_traceback
from tests.security.origin import RawOrigin

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: anything.test\r\n\r\n"


@pytest.fixture(scope="module")
def gw(start_gateway: StartGateway, origin: RawOrigin) -> GatewayProcess:
    policy = make_policy(agent("a", allow=[f"allowed.test:{origin.port}"],
                               allow_cidrs=["127.0.0.0/8"]))
    return start_gateway(policy)


@pytest.fixture(autouse=True)
def clean(gw: GatewayProcess, origin: RawOrigin) -> Iterator[None]:
    origin.clear()
    yield
    assert_no_traceback(gw)


def head(port: int, *lines: str, start: str = "POST", version: str = " HTTP/1.1",
         eol: bytes = b"\r\n") -> bytes:
    first = f"{start} http://allowed.test:{port}/{version}"
    return eol.join(x.encode() for x in (first, f"Host: allowed.test:{port}", *lines)) + eol * 2


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data)


N = len(SMUGGLED)
# (name, bytes after the head builder); every one must be refused with 400
ATTACKS: dict[str, tuple[tuple[str, ...], bytes]] = {
    # the case: Content-Length named hop-by-hop, its body read as a second request
    "connection-names-content-length": (
        (f"Content-Length: {N}", "Connection: Content-Length"), SMUGGLED),
    "connection-names-transfer-encoding": (
        ("Transfer-Encoding: chunked", "Connection: keep-alive, Transfer-Encoding"),
        chunked(SMUGGLED)),
    "connection-names-host": (("Content-Length: 0", "Connection: host"), b""),
    "cl-te": ((f"Content-Length: {N + 5}", "Transfer-Encoding: chunked"), b"0\r\n\r\n" + SMUGGLED),
    "te-cl": (("Transfer-Encoding: chunked", "Content-Length: 4"),
              b"%x\r\n%b\r\n0\r\n\r\n" % (N, SMUGGLED)),
    "duplicate-content-length": ((f"Content-Length: {N}", "Content-Length: 0"), SMUGGLED),
    "same-content-length-twice": ((f"Content-Length: {N}", f"Content-Length: {N}"), SMUGGLED),
    "listed-content-length": ((f"Content-Length: 0, {N}",), SMUGGLED),
    "signed-content-length": ((f"Content-Length: +{N}",), SMUGGLED),
    "space-before-colon": ((f"Content-Length : {N}",), SMUGGLED),
    "obs-fold-transfer-encoding": (("Transfer-Encoding: identity", " chunked"), chunked(SMUGGLED)),
    "obs-fold-hides-content-length": (("X-Pad: 1", f" Content-Length: {N}"), SMUGGLED),
    "te-gzip-chunked": (("Transfer-Encoding: gzip, chunked",), chunked(SMUGGLED)),
    "te-identity": (("Transfer-Encoding: identity",), SMUGGLED),
    "te-chunked-twice-listed": (("Transfer-Encoding: chunked, chunked",), chunked(SMUGGLED)),
    "te-two-headers": (("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
                       chunked(SMUGGLED)),
    "te-xchunked": (("Transfer-Encoding: xchunked",), chunked(SMUGGLED)),
    "chunk-size-overflow": (("Transfer-Encoding: chunked",),
                            b"1" + b"0" * 16 + b"%x\r\n" % N + SMUGGLED + b"\r\n0\r\n\r\n"),
    "chunk-bare-lf": (("Transfer-Encoding: chunked",), b"%x\n%b\n0\n\n" % (N, SMUGGLED)),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_smuggling_shapes_are_refused_before_any_dial(gw: GatewayProcess, origin: RawOrigin,
                                                      name: str) -> None:
    lines, body = ATTACKS[name]
    answer = raw(gw.ports["a"], head(origin.port, *lines) + body)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert f"X-Corral-Reason: {reasons.BAD_REQUEST}".encode() in answer
    time.sleep(0.1)
    assert origin.raw == b"" and origin.urls == []


@pytest.mark.parametrize("data", [
    b"POST http://allowed.test:%d/ HTTP/1.1\nHost: allowed.test:%d\nContent-Length: %d\n\n",
    b"POST http://allowed.test:%d/ HTTP/1.1\r\nHost: allowed.test:%d\nContent-Length: %d\r\n\r\n",
], ids=["bare-lf", "bare-lf-in-one-header"])
def test_bare_lf_is_refused(gw: GatewayProcess, origin: RawOrigin, data: bytes) -> None:
    answer = raw(gw.ports["a"], data % (origin.port, origin.port, N) + SMUGGLED)
    assert answer.startswith(b"HTTP/1.1 400 ")
    time.sleep(0.1)
    assert origin.raw == b""


def test_no_http_version_is_refused(gw: GatewayProcess, origin: RawOrigin) -> None:
    """``GET http://host/`` with no version is HTTP/0.9 to llhttp: not relayed."""
    for data in (b"GET http://allowed.test:%d/\r\n\r\n" % origin.port,
                 b"GET http://allowed.test:%d/ HTTP/2.0\r\n\r\n" % origin.port):
        assert raw(gw.ports["a"], data).startswith(b"HTTP/1.1 400 ")
    time.sleep(0.1)
    assert origin.raw == b""


def one_request(port: int, data: bytes, *pieces: bytes) -> bytes:
    """Send ``data`` then each piece in its own segment; read one 200 response to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(data)
        for piece in pieces:
            time.sleep(0.05)
            s.sendall(piece)
        out = b""
        while not out.endswith(b"\r\n\r\nok"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def test_a_request_inside_a_body_stays_a_body(gw: GatewayProcess, origin: RawOrigin) -> None:
    answer = one_request(gw.ports["a"], head(origin.port, f"Content-Length: {N}") + SMUGGLED)
    assert answer.startswith(b"HTTP/1.1 200 ")
    [seen] = origin.seen
    assert seen.urls == [b"/"] and seen.bodies == [SMUGGLED] and seen.error is None
    framing = [(k, v) for k, v in seen.heads[0] if k in (b"content-length",
                                                          b"transfer-encoding")]
    assert framing == [(b"content-length", b"%d" % N)]


def test_chunked_framing_is_rebuilt(gw: GatewayProcess, origin: RawOrigin) -> None:
    answer = one_request(gw.ports["a"], head(origin.port, "Transfer-Encoding:  Chunked ")
                         + b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    [seen] = origin.seen
    assert seen.urls == [b"/"] and seen.bodies == [b"abc"]
    framing = [(k, v) for k, v in seen.heads[0] if k in (b"content-length",
                                                          b"transfer-encoding")]
    assert framing == [(b"transfer-encoding", b"chunked")]


def test_crlf_only_segment_inside_a_body_is_body(gw: GatewayProcess, origin: RawOrigin) -> None:
    """A segment of only CRLFs inside a Content-Length body was dropped: the request hung."""
    answer = one_request(gw.ports["a"], head(origin.port, "Content-Length: 6"), b"\r\n",
                         b"\r\n", b"ab")
    assert answer.startswith(b"HTTP/1.1 200 ")
    [seen] = origin.seen
    assert seen.bodies == [b"\r\n\r\nab"]


def test_refusals_are_logged_and_never_dial(gw: GatewayProcess, origin: RawOrigin) -> None:
    time.sleep(0.5)  # earlier tests' lines are flushed (every 0.2 s)
    before = len(gw.log_lines())
    raw(gw.ports["a"], head(origin.port, f"Content-Length: {N}", "Connection: Content-Length")
        + SMUGGLED)
    [line] = gw.wait_log(before + 1)[before:]
    assert (line[R.STATUS], line[R.REASON], line[R.RESOLVED]) == (400, reasons.BAD_REQUEST, None)
