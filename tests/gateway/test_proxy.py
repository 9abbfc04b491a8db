"""Loopback tests of the forward proxy: real sockets, real TLS, decisions, access log lines."""

from __future__ import annotations

import http.client
import json
import random
import socket
import socketserver
import ssl
import threading
import types
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from corral.decide import reasons
from corral.gateway.testing import StaticDns, ThreadGateway, free_ports
from corral.model import records as R
from tests.gateway.helpers import agent, connect, https_get, make_policy, raw, request

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
        agent("strict", allow=on(ports, "allowed.test", "private.test", "meta.test", "v6.test",
                                 "mapped.test", "nat64.test")),
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
    opened, closed = gw.log_lines()  # a tunnel: its decision when it opens, its end
    assert (opened[R.EVENT], closed[R.EVENT]) == (R.EVENT_OPEN, R.EVENT_CLOSE)
    assert opened[R.FLOW] == closed[R.FLOW]
    for line in (opened, closed):
        assert line[R.METHOD] == "CONNECT"
        assert line[R.SNI] == "allowed.test"
        assert line[R.STATUS] == 200


def last(gw: ThreadGateway) -> dict[str, object]:
    return gw.log_lines()[-1]


def test_not_in_allowlist_is_403_with_readable_body(gw: ThreadGateway,
                                                    ports: tuple[int, int]) -> None:
    status, headers, body = request(gw.ports["research"], "GET", f"http://other.test:{ports[0]}/")
    assert status == 403
    assert headers["x-corral-reason"] == reasons.NOT_IN_ALLOWLIST
    text = body.decode()
    assert text.count("\n") == 1 and "'research'" in text and f"other.test:{ports[0]}" in text
    assert reasons.NEXT_STEP[reasons.NOT_IN_ALLOWLIST] in text
    line = last(gw)
    assert (line[R.DECISION], line[R.REASON], line[R.STATUS]) == ("deny", "not_in_allowlist", 403)
    assert line[R.RESOLVED] is None  # a denied name is never resolved


def test_deny_beats_allow_and_ports(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    status, headers, _ = request(gw.ports["research"], "GET",
                                 f"http://deny.allowed.test:{ports[0]}/")
    assert status == 403 and headers["x-corral-reason"] == reasons.DENIED_BY_RULE
    assert last(gw)[R.RULE] == "deny.allowed.test"
    status, headers, _ = request(gw.ports["research"], "GET", "http://allowed.test:81/")
    assert status == 403 and headers["x-corral-reason"] == reasons.PORT_NOT_ALLOWED
    status, _, _ = request(gw.ports["research"], "GET", f"http://sub.wild.test:{ports[0]}/")
    assert status == 200


def test_learn_mode_allows_and_logs_would_deny(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    status, _, _ = request(gw.ports["coder"], "GET", f"http://other.test:{ports[0]}/")
    assert status == 200
    line = last(gw)
    assert (line[R.AGENT], line[R.DECISION], line[R.REASON]) == (
        "coder", "would_deny", reasons.NOT_IN_ALLOWLIST)


@pytest.mark.parametrize(("name", "category"), [
    ("allowed.test", "loopback"), ("private.test", "private"), ("meta.test", "link_local"),
    ("v6.test", "loopback"), ("mapped.test", "ipv4_mapped:private"),
    ("nat64.test", "nat64:link_local")])
def test_ssrf_guard_refuses_internal_addresses(gw: ThreadGateway, ports: tuple[int, int],
                                               name: str, category: str) -> None:
    status, headers, _ = request(gw.ports["strict"], "GET", f"http://{name}:{ports[0]}/")
    assert status == 403 and headers["x-corral-reason"] == reasons.FORBIDDEN_ADDRESS
    line = last(gw)
    assert line[R.RULE] == f"ssrf:{category}" and line[R.DECISION] == "deny"


def test_ssrf_guard_holds_in_learn_mode(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    status, headers, _ = request(gw.ports["coder"], "GET", f"http://meta.test:{ports[0]}/")
    assert status == 403 and headers["x-corral-reason"] == reasons.FORBIDDEN_ADDRESS


@pytest.mark.parametrize("spelling", ["127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1",
                                      "[::ffff:7f00:1]", "[::ffff:127.0.0.1]", "0x7f000001"])
def test_ip_literal_spellings_are_refused(gw: ThreadGateway, ports: tuple[int, int],
                                          spelling: str) -> None:
    status, headers, _ = request(gw.ports["strict"], "GET", f"http://{spelling}:{ports[0]}/")
    assert status == 403 and headers["x-corral-reason"] == reasons.FORBIDDEN_ADDRESS
    s, status, _ = connect(gw.ports["strict"], f"{spelling}:{ports[1]}")
    s.close()
    assert status == 403


def test_ip_literal_needs_an_allow_entry_naming_it_with_its_port(
        tmp_path: Path, dns_server: StaticDns, ports: tuple[int, int]) -> None:
    """``resolve_into`` lets names resolve into loopback; only ``127.0.0.1:<port>`` in allow
    admits the literal, on that port only."""
    policy = make_policy(agent("a", allow=[f"127.0.0.1:{ports[0]}"], resolve_into=LOOP),
                         agent("b", allow=on(ports, "allowed.test"), resolve_into=LOOP))
    with ThreadGateway(policy, log_path=str(tmp_path / "a.log"),
                       resolver=("127.0.0.1", dns_server.port)) as g:
        assert request(g.ports["a"], "GET", f"http://2130706433:{ports[0]}/")[0] == 200
        assert request(g.ports["a"], "GET", f"http://127.0.0.1:{ports[1]}/")[0] == 403
        assert request(g.ports["b"], "GET", f"http://127.0.0.1:{ports[0]}/")[0] == 403
        lines = g.log_lines()
        assert [(x[R.HOST], x[R.REASON]) for x in lines] == [
            ("127.0.0.1", reasons.ALLOWED_CIDR), ("127.0.0.1", reasons.FORBIDDEN_ADDRESS),
            ("127.0.0.1", reasons.FORBIDDEN_ADDRESS)]


def test_trailing_dot_and_mixed_case(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    status, _, _ = request(gw.ports["research"], "GET", f"http://ALLOWED.Test.:{ports[0]}/")
    assert status == 200
    assert last(gw)[R.HOST] == "allowed.test"


def test_idn_look_alike_is_not_the_ascii_name(tmp_path: Path, dns_server: StaticDns,
                                              ports: tuple[int, int]) -> None:
    policy = make_policy(agent("a", allow=on(ports, "apple.test"), allow_cidrs=LOOP))
    with ThreadGateway(policy, log_path=str(tmp_path / "a.log"),
                       resolver=("127.0.0.1", dns_server.port)) as g:
        assert request(g.ports["a"], "GET", f"http://apple.test:{ports[0]}/")[0] == 200
        status, headers, _ = request(g.ports["a"], "GET",
                                     f"http://xn--pple-43d.test:{ports[0]}/")
        assert status == 403 and headers["x-corral-reason"] == reasons.NOT_IN_ALLOWLIST
        s, status, _ = connect(g.ports["a"], f"xn--pple-43d.test:{ports[1]}")
        s.close()
        assert status == 403


def test_userinfo_trick(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    status, _, _ = request(gw.ports["research"], "GET",
                           f"http://allowed.test:{ports[0]}@other.test:{ports[0]}/",
                           headers={"Host": f"other.test:{ports[0]}"})
    assert status == 403 and last(gw)[R.HOST] == "other.test"
    status, _, body = request(gw.ports["research"], "GET",
                              f"http://other.test@allowed.test:{ports[0]}/x",
                              headers={"Host": f"allowed.test:{ports[0]}"})
    assert status == 200 and json.loads(body)["path"] == "/x"


def test_host_header_mismatch(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    status, headers, _ = request(gw.ports["research"], "GET", f"http://allowed.test:{ports[0]}/",
                                 headers={"Host": "other.test"})
    assert status == 400 and headers["x-corral-reason"] == reasons.HOST_MISMATCH
    assert last(gw)[R.REASON] == reasons.HOST_MISMATCH


def test_malformed_and_oversized_get_4xx_and_server_keeps_serving(
        gw: ThreadGateway, ports: tuple[int, int]) -> None:
    port = gw.ports["research"]
    assert raw(port, b"\x00\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    big = b"GET http://allowed.test/ HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert raw(port, big).startswith(b"HTTP/1.1 431 ")
    many = b"GET http://allowed.test/ HTTP/1.1\r\n" + b"".join(
        b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n"
    assert raw(port, many).startswith(b"HTTP/1.1 431 ")
    assert raw(port, b"CONNECT nonsense HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert request(port, "GET", f"http://allowed.test:{ports[0]}/")[0] == 200
    reasons_seen = [line[R.REASON] for line in gw.log_lines()]
    assert reasons_seen.count(reasons.BAD_REQUEST) == 4


def test_keep_alive_serves_several_requests_on_one_connection(
        gw: ThreadGateway, ports: tuple[int, int]) -> None:
    with socket.create_connection(("127.0.0.1", gw.ports["research"]), timeout=5) as s:
        for i in range(3):
            status, _, body = request(0, "GET", f"http://allowed.test:{ports[0]}/{i}", sock=s)
            assert status == 200 and json.loads(body)["path"] == f"/{i}"
        status, _, _ = request(0, "GET", f"http://other.test:{ports[0]}/", sock=s)
        assert status == 403  # a refusal keeps the connection too
        status, _, body = request(0, "POST", f"http://allowed.test:{ports[0]}/post", sock=s,
                                  body=b"payload")
        assert status == 200 and json.loads(body)["body"] == "payload"
    lines = gw.log_lines()
    assert len(lines) == 5 and len({line[R.CLIENT] for line in lines}) == 1


def test_chunked_upload_is_forwarded(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    status, _, body = request(gw.ports["research"], "POST", f"http://allowed.test:{ports[0]}/",
                              headers={"Transfer-Encoding": "chunked"},
                              body=b"5\r\nhello\r\n0\r\n\r\n")
    assert status == 200 and json.loads(body)["body"] == "hello"


def test_sni_mismatch_closes_the_tunnel(gw: ThreadGateway, ports: tuple[int, int],
                                        client_tls: ssl.SSLContext) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        https_get(gw.ports["research"], "allowed.test", ports[1], client_tls, sni="other.test")
    line = last(gw)
    assert (line[R.DECISION], line[R.REASON], line[R.SNI]) == ("deny", reasons.SNI_MISMATCH,
                                                               "other.test")


def test_missing_sni_and_plain_tcp_close_the_tunnel(gw: ThreadGateway,
                                                    ports: tuple[int, int]) -> None:
    s, status, _ = connect(gw.ports["research"], f"allowed.test:{ports[1]}")
    assert status == 200
    s.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
    assert s.recv(100) == b""
    s.close()
    assert last(gw)[R.REASON] == reasons.SNI_MISSING
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        https_get(gw.ports["research"], "allowed.test", ports[1], ctx, sni="")
    assert last(gw)[R.REASON] == reasons.SNI_MISSING


def test_tunnel_bytes_sent_with_the_connect_survive_a_half_close(
        gw: ThreadGateway, ports: tuple[int, int], client_tls: ssl.SSLContext) -> None:
    """CONNECT + ClientHello in one write, then the client shuts down its sending side: the
    gateway must still open the tunnel, relay the hello and pass the destination's answer."""
    out_bio = ssl.MemoryBIO()
    tls = client_tls.wrap_bio(ssl.MemoryBIO(), out_bio, server_hostname="allowed.test")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = out_bio.read()
    authority = f"allowed.test:{ports[1]}"
    with socket.create_connection(("127.0.0.1", gw.ports["research"]), timeout=5) as s:
        s.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
                  + hello)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert rest[:1] == b"\x16"  # the origin's ServerHello came back through the tunnel
    assert last(gw)[R.SNI] == "allowed.test"


def test_tunnel_logs_bytes_and_resolved(gw: ThreadGateway, ports: tuple[int, int],
                                        client_tls: ssl.SSLContext) -> None:
    status, _ = https_get(gw.ports["research"], "Allowed.Test.", ports[1], client_tls,
                          sni="allowed.test")
    assert status == 200
    line = last(gw)
    assert line[R.HOST] == "allowed.test" and line[R.RESOLVED] == "127.0.0.1"
    assert line[R.BYTES_UP] > 200 and line[R.BYTES_DOWN] > 500
    assert line[R.PATH] is None and line[R.KIND] == R.KIND_ACCESS


def test_quarantine_via_admin_api(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    url = f"http://allowed.test:{ports[0]}/"
    assert admin(gw, "PUT", "/v1/quarantine/research") == (
        200, {"quarantined": ["research"], "saved": True})
    status, headers, body = request(gw.ports["research"], "GET", url)
    assert status == 403 and headers["x-corral-reason"] == reasons.QUARANTINED
    assert b"quarantined" in body
    assert request(gw.ports["coder"], "GET", url)[0] == 200  # others unaffected
    assert admin(gw, "GET", "/v1/quarantine") == (200, {"quarantined": ["research"]})
    assert admin(gw, "PUT", "/v1/quarantine/nobody")[0] == 404
    assert admin(gw, "DELETE", "/v1/quarantine/research") == (
        200, {"quarantined": [], "saved": True})
    assert request(gw.ports["research"], "GET", url)[0] == 200


def test_metrics_and_health(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    request(gw.ports["research"], "GET", f"http://allowed.test:{ports[0]}/")
    request(gw.ports["research"], "GET", f"http://other.test:{ports[0]}/")
    status, text = admin_text(gw, "/metrics")
    assert status == 200
    assert ('corral_gateway_requests_total{agent="research",decision="allow",'
            'reason="allowed_by_rule"} 1.0') in text
    assert 'decision="deny",reason="not_in_allowlist"} 1.0' in text
    assert "corral_gateway_dns_seconds_count" in text
    assert f'corral_gateway_policy_info{{version="{last(gw)[R.POLICY_VERSION]}"}} 1.0' in text
    assert 'corral_gateway_bytes_up_total{agent="research"}' in text
    assert admin_text(gw, "/healthz")[0] == 200 and admin_text(gw, "/readyz")[0] == 200
    assert admin_text(gw, "/nope")[0] == 404


def admin(gw: ThreadGateway, method: str, path: str) -> tuple[int, object]:
    status, text = admin_text(gw, path, method)
    return status, json.loads(text)


def admin_text(gw: ThreadGateway, path: str, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{gw.admin_port}{path}", method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_upstream_connections_are_pooled_per_agent(gw: ThreadGateway,
                                                   ports: tuple[int, int]) -> None:
    url = f"http://allowed.test:{ports[0]}/"
    peers = [json.loads(request(gw.ports["research"], "GET", url)[2])["peer"] for _ in range(3)]
    assert len(set(peers)) == 1  # three client connections, one upstream connection
    other = json.loads(request(gw.ports["coder"], "GET", url)[2])["peer"]
    assert other not in peers  # never shared with another agent
    post = json.loads(request(gw.ports["research"], "POST", url, body=b"x")[2])["peer"]
    assert post not in peers  # a request with a body never rides a pooled connection...
    again = json.loads(request(gw.ports["research"], "GET", url)[2])["peer"]
    assert again == peers[0]  # ...and its connection is not pooled after it
    lines = gw.log_lines()
    assert [line[R.RESOLVED] for line in lines] == ["127.0.0.1"] * 6


def test_open_tunnels_gauge(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    s, status, _ = connect(gw.ports["research"], f"allowed.test:{ports[1]}")
    assert status == 200
    assert 'corral_gateway_open_tunnels{agent="research"} 1.0' in admin_text(gw, "/metrics")[1]
    s.close()
    gw.log_lines()  # waits for the tunnel to end
    assert 'corral_gateway_open_tunnels{agent="research"} 0.0' in admin_text(gw, "/metrics")[1]


def test_quarantine_cuts_open_tunnels(gw: ThreadGateway, ports: tuple[int, int],
                                      client_tls: ssl.SSLContext) -> None:
    s, status, _ = connect(gw.ports["research"], f"allowed.test:{ports[1]}")
    assert status == 200
    tls = client_tls.wrap_socket(s, server_hostname="allowed.test")
    keep = socket.create_connection(("127.0.0.1", gw.ports["coder"]), timeout=5)
    assert admin(gw, "PUT", "/v1/quarantine/research")[0] == 200
    with pytest.raises((ssl.SSLError, OSError)):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        if not tls.recv(100):
            raise ConnectionResetError("closed by the gateway")
    tls.close()
    status, _, _ = request(0, "GET", f"http://allowed.test:{ports[0]}/", sock=keep)
    assert status == 200  # another agent's open connection is untouched
    keep.close()
    lines = gw.log_lines()
    assert [(x[R.AGENT], x[R.EVENT], x[R.REASON]) for x in lines if x[R.METHOD] == "CONNECT"] == [
        ("research", R.EVENT_OPEN, reasons.ALLOWED_BY_RULE),
        ("research", R.EVENT_CLOSE, reasons.QUARANTINED)]


def test_random_bytes_never_take_the_gateway_down(gw: ThreadGateway,
                                                  ports: tuple[int, int]) -> None:
    rng = random.Random(1234)
    seeds = [b"GET http://allowed.test/ HTTP/1.1\r\n", b"CONNECT a:1 HTTP/1.1\r\n\r\n",
             b"POST http://allowed.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz"]
    for i in range(40):
        blob = rng.choice(seeds)[: rng.randrange(40)] + rng.randbytes(rng.randrange(1, 300))
        answer = raw(gw.ports["research"], blob + b"\r\n\r\n" * (i % 2))
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:80]
    assert request(gw.ports["research"], "GET", f"http://allowed.test:{ports[0]}/")[0] == 200


def test_pipelined_requests_are_answered_in_order(gw: ThreadGateway,
                                                  ports: tuple[int, int]) -> None:
    host = f"allowed.test:{ports[0]}"
    data = b"".join(f"GET http://{host}/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
                    for i in range(3))
    with socket.create_connection(("127.0.0.1", gw.ports["research"]), timeout=5) as s, \
            s.makefile("rb") as stream:
        s.sendall(data)
        # One buffered reader for all three answers: each HTTPResponse would otherwise make
        # its own, and the first may buffer bytes of the next answer that arrived with it.
        # HTTPResponse closes its reader once the body is read, so the shared one ignores that.
        reader = types.SimpleNamespace(readline=stream.readline, read=stream.read,
                                       readinto=stream.readinto, close=lambda: None)
        shared = types.SimpleNamespace(makefile=lambda *_a, **_k: reader)
        for i in range(3):
            resp = http.client.HTTPResponse(shared, method="GET")  # type: ignore[arg-type]
            resp.begin()
            assert resp.status == 200 and json.loads(resp.read())["path"] == f"/{i}"
    assert len(gw.log_lines()) == 3


def test_http10_client_is_served_then_closed(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    answer = raw(gw.ports["research"],
                 f"GET http://allowed.test:{ports[0]}/old HTTP/1.0\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer


def test_unreachable_and_unresolvable_destinations_are_502(
        tmp_path: Path, dns_server: StaticDns) -> None:
    closed = free_ports(1)[0]
    policy = make_policy(agent("a", allow=[f"allowed.test:{closed}", "nowhere.test"],
                               allow_cidrs=LOOP))
    with ThreadGateway(policy, log_path=str(tmp_path / "a.log"),
                       resolver=("127.0.0.1", dns_server.port)) as g:
        status, headers, body = request(g.ports["a"], "GET", f"http://allowed.test:{closed}/")
        assert status == 502 and headers["x-corral-reason"] == reasons.UPSTREAM_FAILED
        assert b"refused" in body
        status, headers, body = request(g.ports["a"], "GET", "http://nowhere.test/")
        assert status == 502 and headers["x-corral-reason"] == reasons.RESOLVE_FAILED
        assert b"not a denial: the gateway's own DNS lookup" in body  # not "check the spelling"
        s, status, _ = connect(g.ports["a"], "nowhere.test:443")
        s.close()
        assert status == 502
        lines = g.log_lines()
        assert [(x[R.DECISION], x[R.REASON]) for x in lines] == [
            ("allow", reasons.UPSTREAM_FAILED), ("allow", reasons.RESOLVE_FAILED),
            ("allow", reasons.RESOLVE_FAILED)]
        assert lines[0][R.RESOLVED] == "127.0.0.1"


class _ClosesOnSecondRequest(socketserver.BaseRequestHandler):
    """An origin whose keep-alive connections die when reused (a keep-alive timeout race)."""

    def handle(self) -> None:
        buf, served = b"", 0
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                _, buf = buf.split(b"\r\n\r\n", 1)
                if served == 1:
                    return  # closes without answering
                served += 1
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def test_stale_pooled_connection_is_retried_for_a_get(tmp_path: Path,
                                                      dns_server: StaticDns) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ClosesOnSecondRequest)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        policy = make_policy(agent("a", allow=[f"allowed.test:{port}"], allow_cidrs=LOOP))
        with ThreadGateway(policy, log_path=str(tmp_path / "a.log"),
                           resolver=("127.0.0.1", dns_server.port)) as g:
            url = f"http://allowed.test:{port}/"
            assert [request(g.ports["a"], "GET", url)[2] for _ in range(3)] == [b"ok"] * 3
            assert [x[R.STATUS] for x in g.log_lines()] == [200, 200, 200]
    finally:
        server.shutdown()
        server.server_close()
