"""CONNECT to an HTTP port (issue 15): Node's undici and the websockets library send http:// and
ws:// as ``CONNECT host:80``. Inside, the gateway reads plain HTTP: each request must name the
CONNECT authority, and is decided and logged as plain HTTP; no SNI check, the CONNECT itself is
not a line. TLS to a port only plain HTTP may use is refused."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.decide import reasons
from corral.gateway.testing import StaticDns, ThreadGateway
from corral.model import records as R
from tests.gateway.helpers import agent, connect, make_policy
from tests.security.origin import RawOrigin

# An origin on port 80 of its own loopback address (tests run as root), one per process, so two
# suites running at once on one machine do not take each other's port 80.
ADDRESS = f"127.0.{os.getpid() % 250 + 1}.7"


@pytest.fixture()
def origin80() -> Iterator[RawOrigin]:
    try:
        server = RawOrigin(address=(ADDRESS, 80))
    except OSError as exc:
        pytest.skip(f"cannot listen on {ADDRESS}:80: {exc}")
    with server:
        yield server


@pytest.fixture()
def gw(tmp_path: Path, origin80: RawOrigin) -> Iterator[ThreadGateway]:
    policy = make_policy(agent("a", allow=["web.test"], allow_cidrs=["127.0.0.0/8"]))
    with StaticDns({"web.test": [[(ADDRESS, 300)]], "other.test": [[(ADDRESS, 300)]]}) as dns, \
            ThreadGateway(policy, log_path=str(tmp_path / "access.log"),
                          resolver=("127.0.0.1", dns.port)) as g:
        yield g


def read_answers(s: socket.socket, count: int) -> bytes:
    out = b""
    for _ in range(50):
        if out.count(b"HTTP/1.1 ") >= count and out.endswith((b"ok", b"\n")):
            break
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def test_plain_http_inside_connect_to_port_80(gw: ThreadGateway, origin80: RawOrigin) -> None:
    s, status, _ = connect(gw.ports["a"], "web.test:80")
    assert status == 200  # "web.test" allows https on 443 and http on 80
    with s:
        s.sendall(b"GET /one HTTP/1.1\r\nHost: web.test\r\n\r\n"
                  b"GET /two HTTP/1.1\r\nHost: web.test:80\r\n\r\n")
        answers = read_answers(s, 2)
        assert answers.count(b"HTTP/1.1 200 ") == 2
        s.sendall(b"GET /three HTTP/1.1\r\nHost: other.test\r\n\r\n")  # not the authority
        assert read_answers(s, 1).startswith(b"HTTP/1.1 400 ")
    assert origin80.urls == [b"/one", b"/two"]
    lines = gw.log_lines()
    assert [(x[R.METHOD], x[R.HOST], x[R.PORT], x[R.PATH], x[R.STATUS]) for x in lines] == [
        ("GET", "web.test", 80, "/one", 200), ("GET", "web.test", 80, "/two", 200),
        ("GET", "", 0, None, 400)]
    assert lines[2][R.REASON] == reasons.HOST_MISMATCH


def test_tls_to_a_plain_http_port_is_refused(gw: ThreadGateway, origin80: RawOrigin) -> None:
    s, status, _ = connect(gw.ports["a"], "web.test:80")
    assert status == 200
    ctx = ssl.create_default_context()
    with pytest.raises(ssl.SSLError):
        ctx.wrap_socket(s, server_hostname="web.test")
    s.close()
    [line] = gw.log_lines()
    assert (line[R.METHOD], line[R.REASON], line[R.STATUS]) == ("CONNECT",
                                                                reasons.PORT_NOT_ALLOWED, 403)
    assert origin80.raw == b""


def test_connect_to_other_ports_is_still_decided_as_connect(gw: ThreadGateway) -> None:
    s, status, body = connect(gw.ports["a"], "web.test:8080")
    s.close()
    assert status == 403 and reasons.PORT_NOT_ALLOWED.encode() in body
