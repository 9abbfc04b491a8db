"""Through the gateway, in namespaces: allowed names work, denied ones get the readable 403,
names resolving to internal addresses are refused, and each request leaves one access-log line.

The agent reaches only the gateway (``test_isolation``); every response body names the server
that answered, so "allowed" means the right machine answered over verified TLS.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from corral.decide import reasons
from corral.model import records as R

from . import client
from . import conftest as cf

pytestmark = pytest.mark.netns


def proxy(world: cf.World, agent: str = "research") -> tuple[str, int]:
    return world.gateway_ip, world.port(agent)


def sent(resp: client.Response) -> int:
    """Bytes of a response as the gateway wrote it (head, blank line, body)."""
    return len(resp.raw_head) + 4 + len(resp.body)


def refused(resp: client.Response, reason: str, *, agent: str = "research",
            status: int = 403) -> None:
    """A refusal the agent can read: status, reason header, one line naming agent and reason."""
    assert resp.status == status, resp
    assert resp.headers.get("X-Corral-Reason") == reason, resp.headers
    text = resp.text
    assert text.count("\n") <= 1, text
    assert agent in text and reason in text, text
    assert "origin" not in text  # no upstream answered


def record_for(world: cf.World, client_addr: str, **fields: Any) -> dict[str, Any]:
    """The access record of the connection from ``client_addr`` (our ip:port) that carries
    ``fields``; none within the wait fails the test. Matching on the client address, not on
    order, keeps tests independent of lines other tests' requests flush late; matching the
    fields too, because the kernel reuses an ephemeral port for connections to another
    listener (another agent), so an older line may carry the same client address."""
    return world.wait_record(lambda r: r.get(R.CLIENT) == client_addr
                             and all(r.get(k) == v for k, v in fields.items()))


def test_allowed_plain_http_reaches_the_right_server_and_is_logged(world: cf.World) -> None:
    resp = client.get(world.agent, proxy(world), "http://allowed.test/hello?x=1")
    assert resp.status == 200
    body = resp.json()
    assert (body["origin"], body["addr"], body["tls"]) == ("public-a", cf.PUBLIC_A, False)
    assert body["host"] == "allowed.test"
    rec = record_for(world, resp.client, **{R.HOST: "allowed.test", R.METHOD: "GET"})
    assert rec[R.AGENT] == "research"
    assert rec[R.DECISION] == "allow" and rec[R.REASON] == reasons.ALLOWED_BY_RULE
    assert rec[R.RULE] == "allowed.test"
    assert rec[R.PORT] == 80 and rec[R.STATUS] == 200
    assert rec[R.PATH] is not None and rec[R.PATH].startswith("/hello")
    assert rec[R.RESOLVED] == cf.PUBLIC_A
    assert rec[R.CLIENT].startswith(world.zones.agent_ip)
    assert rec[R.BYTES_DOWN] > 0
    assert set(R.ACCESS_FIELDS) <= set(rec)


def test_allowed_https_via_connect_with_verified_tls(world: cf.World) -> None:
    resp = client.https_get(world.agent, proxy(world), "api.allowed.test:443", world.ca_pem)
    assert resp.status == 200
    body = resp.json()
    assert (body["origin"], body["tls"], body["sni"]) == ("public-b", True, "api.allowed.test")
    for event in (R.EVENT_OPEN, R.EVENT_CLOSE):  # the decision when it opens, again at its end
        rec = record_for(world, resp.client, **{R.HOST: "api.allowed.test",
                                                R.METHOD: "CONNECT", R.EVENT: event})
        assert rec[R.DECISION] == "allow" and rec[R.RULE] == "*.allowed.test"
        assert rec[R.SNI] == "api.allowed.test" and rec[R.PORT] == 443
        assert rec[R.RESOLVED] == cf.PUBLIC_B and rec[R.STATUS] == 200
    assert rec[R.BYTES_UP_TOTAL] > 0 and rec[R.BYTES_DOWN_TOTAL] > 0


def test_idn_name_below_an_allowed_domain_is_allowed(world: cf.World) -> None:
    resp = client.https_get(world.agent, proxy(world), f"{cf.IDN_ALLOWED}:443", world.ca_pem)
    assert resp.status == 200 and resp.json()["origin"] == "public-b"
    resp = client.get(world.agent, proxy(world), f"http://{cf.IDN_ALLOWED}/")
    assert resp.status == 200 and resp.json()["origin"] == "public-b"


@pytest.mark.parametrize("url", ["http://denied.test/", "http://www.denied.test/x"])
def test_denied_plain_http_gets_readable_403(world: cf.World, url: str) -> None:
    resp = client.get(world.agent, proxy(world), url)
    refused(resp, reasons.NOT_IN_ALLOWLIST)
    assert "denied.test" in resp.text
    assert reasons.NEXT_STEP[reasons.NOT_IN_ALLOWLIST] in resp.text
    host = url.split("/")[2]
    rec = record_for(world, resp.client, **{R.HOST: host})
    assert (rec[R.DECISION], rec[R.REASON], rec[R.STATUS]) == ("deny", "not_in_allowlist", 403)
    assert rec[R.RESOLVED] is None  # a denied name is never even resolved


def test_denied_connect_gets_readable_403(world: cf.World) -> None:
    resp = client.https_get(world.agent, proxy(world), "denied.test:443", world.ca_pem)
    refused(resp, reasons.NOT_IN_ALLOWLIST)
    rec = record_for(world, resp.client, **{R.HOST: "denied.test", R.METHOD: "CONNECT"})
    assert rec[R.DECISION] == "deny" and rec[R.STATUS] == 403


def test_deny_rule_beats_wildcard_allow(world: cf.World) -> None:
    resp = client.https_get(world.agent, proxy(world), "secret.allowed.test:443", world.ca_pem)
    refused(resp, reasons.DENIED_BY_RULE)
    rec = record_for(world, resp.client, **{R.HOST: "secret.allowed.test"})
    assert rec[R.RULE] == "secret.allowed.test"


def test_port_not_in_allowlist(world: cf.World) -> None:
    resp = client.https_get(world.agent, proxy(world), "allowed.test:8443", world.ca_pem)
    refused(resp, reasons.PORT_NOT_ALLOWED)


@pytest.mark.parametrize("name", ["private.test", "private172.test", "meta.test", "loop.test"])
def test_names_resolving_to_internal_addresses_are_refused(world: cf.World, name: str) -> None:
    plain = client.get(world.agent, proxy(world), f"http://{name}/")
    tunnel = client.https_get(world.agent, proxy(world), f"{name}:443", world.ca_pem)
    for resp in (plain, tunnel):
        refused(resp, reasons.FORBIDDEN_ADDRESS)
        rec = record_for(world, resp.client, **{R.HOST: name})
        assert rec[R.DECISION] == "deny" and rec[R.REASON] == reasons.FORBIDDEN_ADDRESS
        assert rec[R.BYTES_DOWN] == sent(resp)  # the refusal, nothing from the destination


def test_ipv6_mapped_private_answer_is_refused(world: cf.World) -> None:
    resp = client.get(world.agent, proxy(world), "http://mapped.test/")
    assert resp.status in (403, 502), resp
    assert resp.headers.get("X-Corral-Reason") in (reasons.FORBIDDEN_ADDRESS,
                                                   reasons.RESOLVE_FAILED)


def test_learn_mode_allows_and_logs_would_deny(world: cf.World) -> None:
    resp = client.get(world.agent, proxy(world, "learner"), "http://denied.test/")
    assert resp.status == 200 and resp.json()["origin"] == "public-denied"
    rec = record_for(world, resp.client, **{R.AGENT: "learner", R.HOST: "denied.test"})
    assert rec[R.DECISION] == "would_deny" and rec[R.REASON] == reasons.NOT_IN_ALLOWLIST


def test_learn_mode_never_relaxes_the_ssrf_guard(world: cf.World) -> None:
    resp = client.get(world.agent, proxy(world, "learner"), "http://private.test/")
    refused(resp, reasons.FORBIDDEN_ADDRESS, agent="learner")


def test_an_explicit_cidr_opens_a_private_destination_for_that_agent_only(
        world: cf.World) -> None:
    resp = client.get(world.agent, proxy(world, "ops"), "http://private.test/")
    assert resp.status == 200 and resp.json()["origin"] == "private"
    refused(client.get(world.agent, proxy(world), "http://private.test/"),
            reasons.FORBIDDEN_ADDRESS)


def test_identity_is_the_listener_port_not_a_header(world: cf.World) -> None:
    resp = client.get(world.agent, proxy(world), "http://denied.test/",
                      headers={"X-Corral-Agent": "learner", "Proxy-Authorization": "learner"})
    refused(resp, reasons.NOT_IN_ALLOWLIST)


def test_keep_alive_serves_several_requests_on_one_connection(world: cf.World) -> None:
    with client.connect(world.agent, *proxy(world)) as sock:
        me = client.local_address(sock)
        for i in range(3):
            sock.sendall(f"GET http://allowed.test/ka{i} HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
                         .encode())
            resp = client.read_response(sock)
            assert resp.status == 200 and resp.json()["path"] == f"/ka{i}"
        sock.sendall(b"GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n")
        refused(client.read_response(sock), reasons.NOT_IN_ALLOWLIST)
    world.wait_record(lambda r: r.get(R.CLIENT) == me and r.get(R.HOST) == "denied.test")
    mine = [r for r in world.log_lines() if r[R.CLIENT] == me]
    assert [r[R.PATH] for r in mine] == ["/ka0", "/ka1", "/ka2", "/"]
    assert [r[R.STATUS] for r in mine] == [200, 200, 200, 403]


def test_exactly_one_log_line_per_request(world: cf.World) -> None:
    mark = world.mark()
    clients = [client.get(world.agent, proxy(world), f"http://{host}/one-line").client
               for host in ["allowed.test", "denied.test", "api.allowed.test", "private.test",
                            "allowed.test"]]
    clients.append(client.https_get(world.agent, proxy(world), "allowed.test:443",
                                    world.ca_pem).client)
    for addr in clients:
        world.wait_record(lambda r, addr=addr: r.get(R.CLIENT) == addr, after=mark)
    # a tunnel also writes a close line (and progress lines while open): its request is counted
    # on its open line only
    new = Counter(r[R.CLIENT] for r in world.log_lines()[mark:] for _ in range(R.requests_of(r)))
    assert all(new[addr] == 1 for addr in clients), new


def _admin(world: cf.World, path: str) -> client.Response:
    data = f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode()
    return client.send_raw(world.zones.gw, world.gateway_ip, cf.ADMIN_PORT, data)


def test_admin_health_and_metrics(world: cf.World) -> None:
    client.get(world.agent, proxy(world), "http://denied.test/metrics-probe")
    assert _admin(world, "/healthz").status == 200
    assert _admin(world, "/readyz").status == 200
    metrics = _admin(world, "/metrics")
    assert metrics.status == 200
    lines = [ln for ln in metrics.text.splitlines() if not ln.startswith("#")]
    assert any('agent="research"' in ln and "deny" in ln for ln in lines), metrics.text[:2000]


def test_the_agent_cannot_reach_the_admin_port_as_a_proxy_target(world: cf.World) -> None:
    for url in (f"http://{world.gateway_ip}:{cf.ADMIN_PORT}/metrics",
                f"http://127.0.0.1:{cf.ADMIN_PORT}/metrics", "http://localhost/"):
        resp = client.get(world.agent, proxy(world), url)
        assert 400 <= resp.status < 500, resp
        assert "corral_" not in resp.text


def test_an_address_entry_admits_that_literal_and_nothing_else(world: cf.World) -> None:
    """``private.test`` may resolve into 10.66.0.0/24; only the entry ``10.66.0.10:80`` admits
    the literal, and only on port 80."""
    resp = client.get(world.agent, proxy(world, "ops"), f"http://{cf.PRIVATE}/lit")
    assert resp.status == 200 and resp.json()["origin"] == "private"
    rec = record_for(world, resp.client, **{R.AGENT: "ops"})
    assert rec[R.REASON] == reasons.ALLOWED_CIDR and rec[R.RESOLVED] == cf.PRIVATE
    for other in (cf.PRIVATE_172, cf.METADATA, cf.PUBLIC_A):
        refused_resp = client.get(world.agent, proxy(world, "ops"), f"http://{other}/")
        assert refused_resp.status == 403, (other, refused_resp)


def test_request_bodies_are_relayed_and_counted(world: cf.World) -> None:
    body = b"x" * 200_000
    head = (b"POST http://allowed.test/upload HTTP/1.1\r\nHost: allowed.test\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    resp = client.send_raw(world.agent, *proxy(world), head + body)
    assert resp.status == 200 and resp.json()["method"] == "POST"
    rec = record_for(world, resp.client, **{R.METHOD: "POST", R.STATUS: 200})
    assert rec[R.BYTES_UP] >= len(body)


def test_chunked_request_bodies_are_relayed(world: cf.World) -> None:
    data = (b"POST http://allowed.test/chunked HTTP/1.1\r\nHost: allowed.test\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    resp = client.send_raw(world.agent, *proxy(world), data)
    assert resp.status == 200 and resp.json()["path"] == "/chunked"


def test_learn_mode_tunnels_to_unlisted_names_with_verified_tls(world: cf.World) -> None:
    resp = client.https_get(world.agent, proxy(world, "learner"), "denied.test:443", world.ca_pem)
    assert resp.status == 200 and resp.json()["origin"] == "public-denied"
    rec = record_for(world, resp.client, **{R.METHOD: "CONNECT", R.HOST: "denied.test"})
    assert rec[R.DECISION] == "would_deny" and rec[R.SNI] == "denied.test"


def test_rate_limit_answers_429_with_retry_after(world: cf.World) -> None:
    """The "limited" agent may make 5 requests a minute; 8 in a row must see 429s (the bucket
    cannot refill in the fraction of a second this takes, so no timing is assumed)."""
    statuses = []
    for i in range(8):
        resp = client.get(world.agent, proxy(world, "limited"), f"http://allowed.test/rate{i}")
        statuses.append(resp.status)
        if resp.status == 429:
            refused(resp, reasons.RATE_LIMITED, agent="limited", status=429)
            assert int(resp.headers["Retry-After"]) > 0
            rec = record_for(world, resp.client, **{R.AGENT: "limited", R.STATUS: 429})
            assert rec[R.REASON] == reasons.RATE_LIMITED
    assert statuses.count(200) <= 5 and 429 in statuses, statuses


def test_upload_quota_answers_429_once_spent(world: cf.World) -> None:
    """The "quota" agent may send 4 KiB an hour; the second 3 KB upload would cross it."""
    def upload(i: int) -> client.Response:
        body = b"q" * 3000
        head = (b"POST http://allowed.test/quota%d HTTP/1.1\r\nHost: allowed.test\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (i, len(body)))
        return client.send_raw(world.agent, *proxy(world, "quota"), head + body)

    first, second = upload(1), upload(2)
    assert first.status == 200 and first.json()["path"] == "/quota1"
    refused(second, reasons.QUOTA_EXCEEDED, agent="quota", status=429)
    assert "/quota2" not in "\n".join(origin_lines(world))


def origin_lines(world: cf.World) -> list[str]:
    return (world.bed.workdir / "origin.log").read_text().splitlines()
