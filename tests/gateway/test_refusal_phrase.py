"""Real sockets: every refusal's status line carries the short form of its one-line reason.

Clients that never show a refusal's body (a refused CONNECT raises with only the status line)
show the reason phrase, so it must say what the body says, made safe for a status line.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from corral.decide import reasons
from corral.gateway.protocol import responses
from corral.gateway.testing import StaticDns, ThreadGateway, free_ports
from tests.gateway.helpers import TIMEOUT, agent, make_policy, raw


@pytest.fixture()
def closed() -> int:
    """An allowed port nobody listens on: refused upstream, 502."""
    return free_ports(1)[0]


@pytest.fixture()
def gw(tmp_path: Path, dns_server: StaticDns, origin_http: ThreadingHTTPServer,
       closed: int) -> Iterator[ThreadGateway]:
    port = origin_http.server_address[1]
    policy = make_policy(agent("research", allow=[f"allowed.test:{port}", f"allowed.test:{closed}"],
                               allow_cidrs=["127.0.0.0/8"]),
                         agent("limited", allow=[f"allowed.test:{port}"],
                               allow_cidrs=["127.0.0.0/8"], rate={"requests_per_minute": 1}))
    with ThreadGateway(policy, log_path=str(tmp_path / "access.log"),
                       resolver=("127.0.0.1", dns_server.port)) as g:
        yield g


def answer(port: int, data: bytes, method: str) -> http.client.HTTPResponse:
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(data)
    resp = http.client.HTTPResponse(s, method=method)
    resp.begin()
    return resp


def test_refused_connect_says_why_in_the_status_line(gw: ThreadGateway) -> None:
    resp = answer(gw.ports["research"], b"CONNECT other.test:443 HTTP/1.1\r\n"
                  b"Host: other.test:443\r\n\r\n", "CONNECT")
    body = resp.read().decode()
    assert resp.status == 403 and resp.getheader("X-Corral-Reason") == reasons.NOT_IN_ALLOWLIST
    assert resp.reason == body.strip()
    assert resp.reason.startswith("corral: agent 'research' may not reach other.test:443")
    assert reasons.NEXT_STEP[reasons.NOT_IN_ALLOWLIST] in resp.reason


def test_plain_http_refusal_says_why_in_the_status_line(gw: ThreadGateway) -> None:
    resp = answer(gw.ports["research"], b"GET http://allowed.test:1/ HTTP/1.1\r\n"
                  b"Host: allowed.test:1\r\n\r\n", "GET")
    assert resp.status == 403 and resp.reason == resp.read().decode().strip()
    assert "allowed.test:1" in resp.reason and reasons.PORT_NOT_ALLOWED in resp.reason


@pytest.mark.parametrize("request_bytes", [
    b"\x00\x01garbage\r\n\r\n",
    b"GET http://allowed.test/ HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    "GET http://caf\u00e9.test/\u2603 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    b"CONNECT nonsense\r\n HTTP/1.1\r\n\r\n",
])
def test_protocol_refusals_have_a_clean_one_line_phrase(gw: ThreadGateway,
                                                        request_bytes: bytes) -> None:
    out = raw(gw.ports["research"], request_bytes)
    status_line, _, rest = out.partition(b"\r\n")
    version, status, phrase = status_line.decode("ascii").split(" ", 2)
    assert version == "HTTP/1.1" and 400 <= int(status) < 500
    assert phrase.startswith("corral: ") and len(phrase) <= responses.PHRASE_MAX
    assert all(" " <= c <= "~" for c in phrase)
    assert b"X-Corral-Reason: " in rest


def test_limit_and_upstream_refusals_say_why_in_the_status_line(
        gw: ThreadGateway, origin_http: ThreadingHTTPServer, closed: int) -> None:
    head = b"GET http://allowed.test:%d/ HTTP/1.1\r\nHost: allowed.test:%d\r\n\r\n"
    port = origin_http.server_address[1]
    assert answer(gw.ports["limited"], head % (port, port), "GET").status == 200
    limited = answer(gw.ports["limited"], head % (port, port), "GET")
    assert limited.status == 429 and limited.getheader("Retry-After")
    assert limited.reason == limited.read().decode().strip()
    assert reasons.RATE_LIMITED in limited.reason
    down = answer(gw.ports["research"], head % (closed, closed), "GET")
    assert down.status == 502 and down.reason == down.read().decode().strip()
    assert reasons.UPSTREAM_FAILED in down.reason and "refused" in down.reason
