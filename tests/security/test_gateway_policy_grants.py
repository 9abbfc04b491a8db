"""Attacks on the egress grants (issue 10, item 2): a range names may resolve into is not a grant
to dial IP literals in it, and a refused tunnel never opens a connection to its destination."""

from __future__ import annotations

import socket

from corral.decide import reasons
from corral.gateway.testing import GatewayProcess, StaticDns
from tests.gateway.helpers import agent, connect, make_policy, request
from tests.security.policy_bed import Counter, client_hello, counter, loop_dns, no_traceback

__all__ = ["counter", "loop_dns"]  # fixtures
LOOP = ["127.0.0.0/8"]


def refused_in_tunnel(s: socket.socket) -> bool:
    """The gateway closed the tunnel, at most after a TLS alert record (no destination bytes)."""
    data = b""
    for _ in range(100):  # bounded: the gateway closes at once
        chunk = s.recv(4096)
        if not chunk:
            return data == b"" or data[:1] == b"\x15"
        data += chunk
    return False


def test_resolve_into_does_not_open_ip_literals(loop_dns: StaticDns, counter: Counter) -> None:
    """examples/corral.yaml's coder: ``10.96.0.0/12`` for names, never CONNECT 10.96.0.1:443
    (here: loopback for names, and the literal 127.0.0.1 refused in enforce and learn mode)."""
    policy = make_policy(
        agent("enforced", allow=[f"allowed.test:{counter.port}"], resolve_into=LOOP),
        agent("learner", mode="learn", allow=[f"allowed.test:{counter.port}"],
              allow_cidrs=LOOP))
    with GatewayProcess(policy, resolver=loop_dns.address) as gw:
        for name in ("enforced", "learner"):
            s, status, body = connect(gw.ports[name], f"127.0.0.1:{counter.port}")
            s.close()
            assert status == 403 and reasons.FORBIDDEN_ADDRESS.encode() in body
            status, headers, _ = request(gw.ports[name], "GET",
                                         f"http://2130706433:{counter.port}/")
            assert status == 403 and headers["x-corral-reason"] == reasons.FORBIDDEN_ADDRESS
        assert counter.accepted == 0
        no_traceback(gw)


def test_a_refused_tunnel_never_dials(loop_dns: StaticDns, counter: Counter) -> None:
    """CONNECT to an address the policy grants, with the SNI of an allowed name: the SNI check
    refuses it, and the gateway has not opened TCP to the address before (or after)."""
    policy = make_policy(agent("a", allow=[f"127.0.0.1:{counter.port}",
                                           f"allowed.test:{counter.port}"],
                               resolve_into=LOOP))
    with GatewayProcess(policy, resolver=loop_dns.address) as gw:
        for authority, sni in ((f"127.0.0.1:{counter.port}", "allowed.test"),
                               (f"allowed.test:{counter.port}", "other.test")):
            s, status, _ = connect(gw.ports["a"], authority)
            assert status == 200
            s.sendall(client_hello(sni))
            assert refused_in_tunnel(s)
            s.close()
        assert counter.accepted == 0
        lines = gw.wait_log(2)
        assert [x["reason"] for x in lines] == [reasons.SNI_MISMATCH] * 2
        no_traceback(gw)


def test_an_allowed_tunnel_dials_after_the_hello(loop_dns: StaticDns, counter: Counter) -> None:
    policy = make_policy(agent("a", allow=[f"allowed.test:{counter.port}"], resolve_into=LOOP))
    with GatewayProcess(policy, resolver=loop_dns.address) as gw:
        s, status, _ = connect(gw.ports["a"], f"allowed.test:{counter.port}")
        assert status == 200
        s.sendall(client_hello("allowed.test"))
        assert s.recv(100) == b""  # the counter closes what it accepts
        s.close()
        assert counter.accepted == 1
        no_traceback(gw)
