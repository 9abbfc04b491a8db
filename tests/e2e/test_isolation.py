"""The agent namespace cannot reach the fake internet directly, by address or by name.

Each refusal is paired with a control from the gateway's namespace that reaches the same server
or DNS answer, so a broken test bed cannot pass for isolation.
"""

from __future__ import annotations

import dns.exception
import dns.message
import dns.query
import pytest

from . import conftest as cf

pytestmark = pytest.mark.netns


@pytest.mark.parametrize("addr", [cf.PUBLIC_A, cf.PUBLIC_DENIED, cf.PRIVATE, cf.METADATA])
@pytest.mark.parametrize("port", [80, 443])
def test_agent_cannot_connect_directly_by_address(net: cf.World, addr: str, port: int) -> None:
    net.zones.gw.connect(addr, port, timeout=2).close()  # control: the server is up
    with pytest.raises(OSError):
        net.agent.connect(addr, port, timeout=2).close()


def _ask(ns: cf.netns.Namespace, server: str, name: str) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    with ns.entered():
        return dns.query.udp(query, server, timeout=2.0)


def test_agent_cannot_resolve_or_reach_by_name(net: cf.World) -> None:
    answer = _ask(net.zones.gw, net.dns_ip, "allowed.test")  # control: DNS works from gw
    assert [r.to_text() for rr in answer.answer for r in rr] == [cf.PUBLIC_A]
    with pytest.raises((OSError, dns.exception.Timeout)):
        _ask(net.agent, net.dns_ip, "allowed.test")
    with pytest.raises(OSError):
        net.agent.connect(cf.PUBLIC_A, 443, timeout=2).close()


def test_rebinding_server_answers_public_then_private(net: cf.World) -> None:
    first = _ask(net.zones.gw, net.dns_ip, "probe.rebind.test")
    then = _ask(net.zones.gw, net.dns_ip, "probe.rebind.test")
    assert [r.to_text() for rr in first.answer for r in rr] == [cf.PUBLIC_A]
    assert [r.to_text() for rr in then.answer for r in rr] == [cf.PRIVATE]


def test_the_only_address_the_agent_reaches_is_the_gateway(net: cf.World) -> None:
    routes = net.agent.ip("-4", "route", "show").strip().splitlines()
    assert routes and all(line.startswith("10.200.0.0/30 ") for line in routes), routes
