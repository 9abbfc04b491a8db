"""Loopback tests of the forward proxy: real sockets, real TLS, decisions, access log lines."""

from __future__ import annotations

import json
import ssl
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from corral.decide import reasons
from corral.gateway.testing import StaticDns, ThreadGateway
from corral.model import records as R
from tests.gateway.helpers import agent, https_get, make_policy, request

LOOP = ["127.0.0.0/8"]


def on(ports: tuple[int, int], *names: str) -> list[str]:
    """Each name on both origin ports (entries name the port: origins are not on 80/443)."""
    return [f"{n}:{p}" for n in names for p in ports]


@pytest.fixture()
def ports(origin_http: ThreadingHTTPServer, origin_https: ThreadingHTTPServer) -> tuple[int, int]:
    return origin_http.server_address[1], origin_https.server_address[1]


@pytest.fixture()
def gw(tmp_path: Path, dns_server: StaticDns, ports: tuple[int, int]):
    policy = make_policy(
        agent("research", allow=on(ports, "allowed.test", "*.wild.test", "*.allowed.test"),
              deny=["deny.allowed.test"], allow_cidrs=LOOP),
        agent("coder", mode="learn", allow=on(ports, "allowed.test"), allow_cidrs=LOOP),
        agent("strict", allow=on(ports, "allowed.test", "private.test", "meta.test")),
    )
    with ThreadGateway(policy, log_path=str(tmp_path / "access.log"),
                       resolver=("127.0.0.1", dns_server.port)) as g:
        yield g


def test_plain_http_allowed(gw: ThreadGateway, origin_http: ThreadingHTTPServer) -> None:
    port = origin_http.server_address[1]
    status, _, body = request(gw.ports["research"], "GET",
                                    f"http://allowed.test:{port}/hello?x=1",
                                    headers={"Proxy-Authorization": "secret", "X-Keep": "1"})
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/hello?x=1"
    assert "Proxy-Authorization" not in seen["headers"]
    assert seen["headers"]["X-Keep"] == "1"
    assert seen["headers"]["Host"] == f"allowed.test:{port}"
    [line] = gw.log_lines()
    assert set(line) == set(R.ACCESS_FIELDS)
    assert line[R.DECISION] == "allow"
    assert line[R.REASON] == reasons.ALLOWED_BY_RULE
    assert line[R.HOST] == "allowed.test"
    assert line[R.RESOLVED] == "127.0.0.1"
    assert line[R.PATH] == "/hello?x=1"
    assert line[R.STATUS] == 200
    assert line[R.AGENT] == "research"
    assert line[R.BYTES_DOWN] > 0 and line[R.BYTES_UP] > 0


def test_https_connect_allowed(gw: ThreadGateway, origin_https: ThreadingHTTPServer,
                               client_tls: ssl.SSLContext) -> None:
    port = origin_https.server_address[1]
    status, body = https_get(gw.ports["research"], "allowed.test", port, client_tls)
    assert status == 200, body
    [line] = gw.log_lines()
    assert line[R.METHOD] == "CONNECT"
    assert line[R.SNI] == "allowed.test"
    assert line[R.STATUS] == 200
