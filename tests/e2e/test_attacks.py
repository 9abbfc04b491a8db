"""Attack-style requests against the real gateway in namespaces.

Each test sends what a compromised agent would send to get around the allowlist or the SSRF
guard, and asserts two things: the gateway refuses with a 4xx (never a crash, never a hang), and
no server that should be out of reach answered (every server's reply names itself, and the
origin processes log every request they get).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import uuid

import pytest

from corral.decide import reasons
from corral.gateway.protocol import responses
from corral.model import records as R

from . import client
from . import conftest as cf
from .test_gateway import proxy, record_for, refused

pytestmark = pytest.mark.netns

LITERAL_REASONS = {reasons.IP_LITERAL, reasons.FORBIDDEN_ADDRESS, reasons.INVALID_HOST}

IP_SPELLINGS = [
    "127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "127.1", "127.0.1",
    "017700000001", "0", "0.0.0.0", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
    "[::ffff:a42:a]", "[0:0:0:0:0:ffff:169.254.169.254]", "10.66.0.10", "169.254.169.254",
    "0xa9.0xfe.0xa9.0xfe", "2852039166", "1.2.3.4", "0x01020304", "16909060", "1.2.3.4.",
]


def assert_gateway_healthy(world: cf.World) -> None:
    resp = client.get(world.agent, proxy(world), "http://allowed.test/still-up")
    assert resp.status == 200 and resp.json()["origin"] == "public-a"


def origin_requests(world: cf.World, token: str) -> list[str]:
    """Lines of the origin servers' request logs that mention ``token``."""
    lines = []
    for name in ("origin", "gw-secret"):
        path = world.bed.workdir / f"{name}.log"
        lines += [ln for ln in path.read_text().splitlines() if token in ln]
    return lines


@pytest.mark.parametrize("spelling", IP_SPELLINGS)
def test_ip_literals_in_every_spelling_are_refused(world: cf.World, spelling: str) -> None:
    token = uuid.uuid4().hex
    plain = client.get(world.agent, proxy(world), f"http://{spelling}/{token}")
    port_host = spelling if spelling.startswith("[") else spelling.rstrip(".")
    tunnel_sock, tunnel = client.open_tunnel(world.agent, proxy(world), f"{port_host}:443")
    tunnel_sock.close()
    for resp in (plain, tunnel):
        assert 400 <= resp.status < 500, (spelling, resp)
        assert resp.headers.get("X-Corral-Reason") in LITERAL_REASONS, (spelling, resp.headers)
    assert origin_requests(world, token) == []


def test_the_gateways_own_loopback_is_never_reached(world: cf.World) -> None:
    token = uuid.uuid4().hex
    for url in (f"http://127.0.0.1/{token}", f"http://localhost/{token}",
                f"http://loop.test/{token}", f"http://2130706433/{token}"):
        resp = client.get(world.agent, proxy(world), url)
        assert 400 <= resp.status < 500, (url, resp)
    assert origin_requests(world, token) == []


def test_rebinding_name_never_reaches_the_private_server(world: cf.World) -> None:
    """<token>.rebind.test answers public first and private afterwards, always with TTL 0."""
    token = uuid.uuid4().hex
    host = f"r{token[:12]}.rebind.test"
    mark = world.mark()
    outcomes = []
    for i in range(4):
        resp = client.get(world.agent, proxy(world), f"http://{host}/{token}/{i}")
        if resp.status == 200:
            outcomes.append(resp.json()["origin"])
        else:
            refused(resp, reasons.FORBIDDEN_ADDRESS)
            outcomes.append("refused")
    assert "private" not in outcomes
    assert outcomes[0] == "public-a"  # the first answer was public and was the one dialled
    assert "refused" in outcomes  # TTL 0 respected: later answers were vetted afresh
    reached = origin_requests(world, token)
    assert reached and all(line.startswith("public-a ") for line in reached), reached
    world.wait_record(lambda r: r.get(R.HOST) == host and r.get(R.PATH) == f"/{token}/3",
                      after=mark)
    dialled = {r[R.RESOLVED] for r in world.log_lines()[mark:]
               if r[R.HOST] == host and r[R.DECISION] == "allow"}
    assert dialled == {cf.PUBLIC_A}


@pytest.mark.parametrize(("host", "origin"), [
    ("allowed.test.", "public-a"), ("ALLOWED.Test", "public-a"), ("Api.ALLOWED.test.", "public-b"),
])
def test_trailing_dot_and_case_are_normalised_for_allowed_names(
        world: cf.World, host: str, origin: str) -> None:
    resp = client.get(world.agent, proxy(world), f"http://{host}/norm")
    assert resp.status == 200 and resp.json()["origin"] == origin
    record_for(world, resp.client, **{R.HOST: host.lower().rstrip("."), R.PATH: "/norm"})


@pytest.mark.parametrize("host", ["SECRET.allowed.test", "secret.allowed.test.",
                                  "Secret.Allowed.Test.", "DENIED.test", "denied.test."])
def test_trailing_dot_and_case_do_not_slip_past_a_denial(world: cf.World, host: str) -> None:
    resp = client.get(world.agent, proxy(world), f"http://{host}/")
    assert resp.status == 403
    assert resp.headers.get("X-Corral-Reason") in (reasons.DENIED_BY_RULE,
                                                   reasons.NOT_IN_ALLOWLIST)
    sock, tunnel = client.open_tunnel(world.agent, proxy(world), f"{host}:443")
    sock.close()
    assert tunnel.status == 403


@pytest.mark.parametrize("host", ["allowed.test..", ".allowed.test", "allowed..test",
                                  "-allowed.test", "allowed.test\\.evil", "a" * 64 + ".test"])
def test_malformed_names_are_refused(world: cf.World, host: str) -> None:
    resp = client.get(world.agent, proxy(world), f"http://{host}/")
    assert 400 <= resp.status < 500, (host, resp)
    assert_gateway_healthy(world)


def test_idn_lookalike_of_an_allowed_name_is_refused(world: cf.World) -> None:
    """'allowed.test' spelled with a Cyrillic a (U+0430) resolves (to the same server!) but is
    another name."""
    for host in (cf.LOOKALIKE, "\u0430llowed.test"):
        sock, tunnel = client.open_tunnel(world.agent, proxy(world), f"{host}:443")
        sock.close()
        assert tunnel.status in (400, 403), (host, tunnel)
        if tunnel.status == 403:
            assert tunnel.headers.get("X-Corral-Reason") == reasons.NOT_IN_ALLOWLIST
    refused(client.get(world.agent, proxy(world), f"http://{cf.LOOKALIKE}/"),
            reasons.NOT_IN_ALLOWLIST)


def _tls_through(world: cf.World, authority: str,
                 sni: str | None) -> tuple[bool, str, str]:
    """CONNECT ``authority`` (allowed), then TLS with ``sni``; (handshake ok, what happened,
    our client address)."""
    sock, first = client.open_tunnel(world.agent, proxy(world), authority)
    me = first.client
    with sock:
        assert first.status == 200, first
        ctx = client.tls_context(world.ca_pem)
        if sni is None:
            ctx.check_hostname = False
        try:
            with ctx.wrap_socket(sock, server_hostname=sni) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return True, client.read_response(tls).text, me
        except (ssl.SSLError, OSError) as exc:
            return False, repr(exc), me


@pytest.mark.parametrize("sni", ["denied.test", "secret.allowed.test", cf.LOOKALIKE])
def test_sni_mismatch_inside_an_allowed_tunnel_is_refused(world: cf.World, sni: str) -> None:
    ok, what, me = _tls_through(world, "allowed.test:443", sni)
    assert not ok, what
    rec = record_for(world, me, **{R.HOST: "allowed.test", R.SNI: sni})
    assert rec[R.DECISION] == "deny" and rec[R.REASON] == reasons.SNI_MISMATCH


def test_missing_sni_is_refused(world: cf.World) -> None:
    ok, what, me = _tls_through(world, "allowed.test:443", None)
    assert not ok, what
    record_for(world, me, **{R.HOST: "allowed.test", R.REASON: reasons.SNI_MISSING})


def test_plain_bytes_inside_a_tunnel_are_refused(world: cf.World) -> None:
    sock, first = client.open_tunnel(world.agent, proxy(world), "allowed.test:443")
    with sock:
        assert first.status == 200
        sock.sendall(b"GET / HTTP/1.1\r\nHost: denied.test\r\n\r\n")
        sock.settimeout(5)
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
    assert b"origin" not in data
    rec = record_for(world, first.client, **{R.HOST: "allowed.test", R.METHOD: "CONNECT"})
    assert rec[R.DECISION] == "deny" and rec[R.BYTES_DOWN] == len(responses.CONNECT_OK)


def test_host_header_must_match_the_absolute_uri(world: cf.World) -> None:
    for url, host in (("http://allowed.test/", "denied.test"),
                      ("http://denied.test/", "allowed.test")):
        resp = client.get(world.agent, proxy(world), url, host=host)
        assert resp.status in (400, 403), resp
        assert resp.headers.get("X-Corral-Reason") in (reasons.HOST_MISMATCH,
                                                       reasons.NOT_IN_ALLOWLIST)
        assert "origin" not in resp.text


@pytest.mark.parametrize(("url", "real_host"), [
    ("http://allowed.test@denied.test/", "denied.test"),
    ("http://allowed.test:80@denied.test/", "denied.test"),
    ("http://user:pw@denied.test/", "denied.test"),
    ("http://denied.test\\@allowed.test/", "denied.test"),  # WHATWG: backslash ends the host
    ("http://denied.test#@allowed.test/", "denied.test"),
    ("http://denied.test%2F@allowed.test/", "allowed.test"),  # userinfo is "denied.test%2F"
])
def test_userinfo_tricks_never_reach_a_denied_server(world: cf.World, url: str,
                                                     real_host: str) -> None:
    """Whatever the parser makes of it, the request either is refused or goes to the host a
    URL parser (RFC 3986 / WHATWG) would name, and never to a denied server."""
    resp = client.get(world.agent, proxy(world), url, host="allowed.test")
    assert "public-denied" not in resp.text
    if real_host == "denied.test":
        assert 400 <= resp.status < 500, (url, resp)
    else:
        assert resp.status in (200, 400, 403), (url, resp)
        assert resp.status != 200 or resp.json()["origin"] == "public-a"


@pytest.mark.parametrize("authority", ["allowed.test@denied.test:443",
                                       "denied.test:443@allowed.test:443",
                                       "allowed.test:443/evil", "allowed.test", "allowed.test:",
                                       "allowed.test:99999", ":443"])
def test_malformed_connect_authorities_are_refused(world: cf.World, authority: str) -> None:
    sock, resp = client.open_tunnel(world.agent, proxy(world), authority)
    sock.close()
    assert 400 <= resp.status < 500, (authority, resp)


@pytest.mark.parametrize("data", [
    b"\x00\x01\x02\x03garbage\r\n\r\n",
    b"GET http://allowed.test/ HTTP/9.9\r\nHost: allowed.test\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n",  # origin-form: not a proxy request
    b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: -1\r\n\r\n",
    b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: denied.test\r\n\r\n",
    b"GET http://allowed.test/ HTTP/1.1\r\nHost allowed.test\r\n\r\n",
    b"GET http://allowed.test/\x7f HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
])
def test_malformed_requests_get_4xx_and_the_gateway_stays_up(world: cf.World,
                                                             data: bytes) -> None:
    resp = client.send_raw(world.agent, *proxy(world), data)
    assert 400 <= resp.status < 500, (data, resp)
    assert "origin" not in resp.text
    assert_gateway_healthy(world)


def test_hop_by_hop_and_proxy_credentials_are_not_forwarded(world: cf.World) -> None:
    resp = client.get(world.agent, proxy(world), "http://allowed.test/hop", headers={
        "Proxy-Authorization": "Basic c2VjcmV0OnNlY3JldA==", "Proxy-Connection": "keep-alive",
        "X-Hop": "drop-me", "Connection": "close, X-Hop", "X-Kept": "yes"})
    assert resp.status == 200
    seen = resp.json()["headers"]
    assert seen.get("x-kept") == "yes"  # control: ordinary headers pass
    for name in ("proxy-authorization", "proxy-connection", "x-hop"):
        assert name not in seen, seen


def test_pipelined_requests_are_decided_one_by_one(world: cf.World) -> None:
    with client.connect(world.agent, *proxy(world)) as sock:
        sock.sendall(b"GET http://allowed.test/p1 HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
                     b"GET http://denied.test/p2 HTTP/1.1\r\nHost: denied.test\r\n\r\n"
                     b"GET http://api.allowed.test/p3 HTTP/1.1\r\nHost: api.allowed.test\r\n"
                     b"Connection: close\r\n\r\n")
        reader = client.Buffered(sock)  # responses may arrive in one segment
        first, second, third = (client.read_response(reader) for _ in range(3))
    assert (first.status, first.json()["path"]) == (200, "/p1")
    refused(second, reasons.NOT_IN_ALLOWLIST)
    assert (third.status, third.json()["origin"]) == (200, "public-b")


def test_http10_without_host_uses_the_absolute_uri(world: cf.World) -> None:
    resp = client.send_raw(world.agent, *proxy(world),
                           b"GET http://allowed.test/ten HTTP/1.0\r\n\r\n")
    assert resp.status == 200 and resp.json()["origin"] == "public-a"
    resp = client.send_raw(world.agent, *proxy(world),
                           b"GET http://denied.test/ten HTTP/1.0\r\n\r\n")
    assert resp.status == 403


@pytest.mark.parametrize("url", ["https://allowed.test/", "ftp://allowed.test/",
                                 "http://[fe80::1%25eth0]/", "http:///allowed.test/",
                                 "http://allowed.test:0/", "gopher://allowed.test:70/"])
def test_odd_schemes_and_authorities_in_plain_requests(world: cf.World, url: str) -> None:
    resp = client.get(world.agent, proxy(world), url, host="allowed.test")
    assert 400 <= resp.status < 500, (url, resp)
    assert "origin" not in resp.text


@pytest.mark.parametrize("data", [
    b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: " + b"a" * 70000
    + b"\r\n\r\n",
    b"GET http://allowed.test/" + b"p" * 70000 + b" HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
])
def test_oversized_requests_are_refused(world: cf.World, data: bytes) -> None:
    with client.connect(world.agent, *proxy(world)) as sock:
        # the gateway may close before reading it all; that is a refusal too
        with contextlib.suppress(OSError):
            sock.sendall(data)
        try:
            resp: client.Response | None = client.read_response(sock)
        except (ConnectionError, OSError):
            resp = None
    assert resp is None or resp.status in (400, 413, 414, 431), resp
    assert_gateway_healthy(world)


def test_slowloris_clients_are_cut_off_and_others_are_served(world: cf.World) -> None:
    """Connections that trickle a request head are closed after the header timeout (2 s in the
    e2e policy); meanwhile a normal client is served. Bounded: 20 connections, <= 15 s."""
    conns = [client.connect(world.agent, *proxy(world), timeout=1.0) for _ in range(20)]
    closed = [False] * len(conns)
    deadline = time.monotonic() + 15.0
    try:
        for c in conns:
            c.sendall(b"GET http://allowed.test/ HTTP/1.1\r\n")
        assert_gateway_healthy(world)
        while not all(closed) and time.monotonic() < deadline:
            for i, c in enumerate(conns):
                if closed[i]:
                    continue
                try:
                    c.sendall(b"X")
                    c.settimeout(0.05)
                    data = c.recv(4096)
                    closed[i] = data == b"" or data.startswith(b"HTTP/1.1 4")
                except TimeoutError:
                    pass
                except OSError:
                    closed[i] = True
            time.sleep(0.2)
    finally:
        for c in conns:
            c.close()
    assert all(closed), f"{closed.count(False)} slow connections still open after 15 s"
    assert_gateway_healthy(world)


def test_tunnel_limit_per_agent(world: cf.World) -> None:
    """The research agent may hold 64 tunnels (e2e policy); the 65th is refused, and closing
    one frees a slot."""
    open_socks: list[socket.socket] = []
    try:
        for _ in range(64):
            sock, first = client.open_tunnel(world.agent, proxy(world), "allowed.test:443")
            open_socks.append(sock)
            assert first.status == 200, first
        sock, extra = client.open_tunnel(world.agent, proxy(world), "allowed.test:443")
        sock.close()
        assert extra.status in (429, 503), extra
        assert extra.headers.get("X-Corral-Reason") == reasons.TUNNEL_LIMIT
    finally:
        for s in open_socks:
            s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sock, again = client.open_tunnel(world.agent, proxy(world), "allowed.test:443")
        sock.close()
        if again.status == 200:
            break
        time.sleep(0.2)
    assert again.status == 200
