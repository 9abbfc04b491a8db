"""Protocol leftovers of issue 10, against a real gateway subprocess: an origin answering 101,
a client that half-closes after its request, a tunnel refused at the SNI check, malformed and
oversized heads. No traceback may reach the gateway's stderr."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from corral.decide import reasons
from corral.gateway.testing import GatewayProcess
from corral.model import records as R
from tests.gateway.helpers import agent, connect, make_policy, raw
from tests.security.conftest import StartGateway, assert_no_traceback
from tests.security.origin import RawOrigin

SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


@pytest.fixture(scope="module")
def switching() -> Iterator[RawOrigin]:
    with RawOrigin(reply=SWITCH) as server:
        yield server


@pytest.fixture(scope="module")
def gw(start_gateway: StartGateway, origin: RawOrigin, switching: RawOrigin) -> GatewayProcess:
    allow = [f"allowed.test:{origin.port}", f"other.test:{switching.port}"]
    return start_gateway(make_policy(agent("a", allow=allow, allow_cidrs=["127.0.0.0/8"])))


@pytest.fixture(autouse=True)
def clean(gw: GatewayProcess) -> Iterator[None]:
    yield
    assert_no_traceback(gw)


def line_for(gw: GatewayProcess, **match: object) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in gw.log_lines():
            if all(line.get(k) == v for k, v in match.items()):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access line with {match}")


def test_origin_answering_101_is_a_clean_502(gw: GatewayProcess, switching: RawOrigin) -> None:
    url = f"http://other.test:{switching.port}/ws"
    answer = raw(gw.ports["a"], f"GET {url} HTTP/1.1\r\nHost: other.test:{switching.port}\r\n"
                 "Connection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 502 ") and b"switched protocols" in answer
    line = line_for(gw, **{R.PATH: "/ws"})
    assert (line[R.STATUS], line[R.REASON]) == (502, reasons.UPSTREAM_FAILED)


def test_half_close_after_a_complete_request_gets_the_reply(gw: GatewayProcess,
                                                            origin: RawOrigin) -> None:
    for path in ("/half", "/half-body"):
        body = b"xy" if path == "/half-body" else b""
        head = (f"POST http://allowed.test:{origin.port}{path} HTTP/1.1\r\n"
                f"Host: allowed.test:{origin.port}\r\nContent-Length: {len(body)}\r\n\r\n")
        with socket.create_connection(("127.0.0.1", gw.ports["a"]), timeout=5) as s:
            s.sendall(head.encode() + body)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"ok"), (path, out)


def test_half_close_answers_every_pipelined_request(gw: GatewayProcess,
                                                    origin: RawOrigin) -> None:
    one = (f"GET http://allowed.test:{origin.port}/p HTTP/1.1\r\n"
           f"Host: allowed.test:{origin.port}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", gw.ports["a"]), timeout=5) as s:
        s.sendall(one * 3)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.count(b"HTTP/1.1 200 ") == 3


def test_half_close_inside_a_head_closes(gw: GatewayProcess, origin: RawOrigin) -> None:
    with socket.create_connection(("127.0.0.1", gw.ports["a"]), timeout=5) as s:
        s.sendall(f"GET http://allowed.test:{origin.port}/ HTTP/1.1\r\n".encode())
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""


def test_sni_refusal_logs_what_the_client_saw(gw: GatewayProcess, origin: RawOrigin) -> None:
    """The client got 200 for CONNECT, then a TLS access_denied alert instead of the server's
    hello: logged as 403 with the reason, and no byte of it reached the origin."""
    origin.clear()
    s, status, _ = connect(gw.ports["a"], f"allowed.test:{origin.port}")
    assert status == 200
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises(ssl.SSLError, match=r"(?i)access.denied"):
        ctx.wrap_socket(s, server_hostname="other.test")
    s.close()
    line = line_for(gw, **{R.METHOD: "CONNECT", R.SNI: "other.test"})
    assert (line[R.STATUS], line[R.DECISION], line[R.REASON]) == (403, "deny",
                                                                  reasons.SNI_MISMATCH)
    assert line[R.BYTES_UP] == 0
    assert origin.raw == b""


@pytest.mark.parametrize(("data", "status"), [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 400),
    (b"GET http://allowed.test/ HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET http://allowed.test/ HTTP/1.1\r\n" + b"X-A: 1\r\n" * 300 + b"\r\n", 431),
    (b"GET http://allowed.test/ HTTP/1.1\r\nX: \x00\r\n\r\n", 400),
    (b"GET /relative HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 400),
    (b"\xff" * 5000 + b"\r\n\r\n", 400),
], ids=["tls-to-plain-port", "huge-header", "many-headers", "nul", "origin-form", "binary"])
def test_malformed_and_oversized_heads(gw: GatewayProcess, data: bytes, status: int) -> None:
    answer = raw(gw.ports["a"], data)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:100]
