"""The gateway dialling itself (issue 10, item 3): a policy whose grants cover the gateway's
own addresses still never reaches its admin port, another agent's listener, or the control
plane, by name or by address, in enforce and learn mode."""

from __future__ import annotations

from typing import Any

from corral.decide import reasons
from corral.gateway.testing import GatewayProcess, StaticDns, free_ports
from tests.gateway.helpers import connect, make_policy, request
from tests.security.policy_bed import Counter, counter, loop_dns, no_traceback

__all__ = ["counter", "loop_dns"]  # fixtures
LOOP = ["127.0.0.0/8"]


def wide(name: str, port: int, targets: list[int], **egress: Any) -> dict[str, Any]:
    """An agent on ``port`` allowed every target port on loopback, by name and by address."""
    allow = [e for t in targets for e in (f"self.test:{t}", f"127.0.0.0/8:{t}")]
    return {"name": name, "selector": {"app": name}, "port": port,
            "egress": {"allow": allow, "resolve_into": LOOP, "sni_check": False, **egress}}


def refused(answer: tuple[int, dict[str, str], bytes]) -> bool:
    status, headers, body = answer
    return (status == 403 and headers.get("x-corral-reason") == reasons.FORBIDDEN_ADDRESS
            and b"corral_" not in body and b'"quarantined"' not in body)


def test_no_agent_reaches_the_admin_api_or_another_listener(loop_dns: StaticDns) -> None:
    admin, pa, pl, pb = free_ports(4)
    targets = [admin, pa, pl, pb]
    policy = make_policy(wide("a", pa, targets), wide("l", pl, targets, mode="learn"),
                         wide("b", pb, []))
    with GatewayProcess(policy, resolver=loop_dns.address, admin_port=admin) as gw:
        for name in ("a", "l"):
            for url in (f"http://self.test:{admin}/v1/quarantine",
                        f"http://127.0.0.1:{admin}/metrics",
                        f"http://127.0.0.2:{admin}/metrics",
                        f"http://0.0.0.0:{admin}/metrics",
                        f"http://[::ffff:127.0.0.1]:{admin}/metrics",
                        f"http://127.0.0.1:{pb}/"):
                assert refused(request(gw.ports[name], "GET", url)), (name, url)
            for method in ("PUT", "DELETE"):
                answer = request(gw.ports[name], method,
                                 f"http://127.0.0.1:{admin}/v1/quarantine/b")
                assert refused(answer), answer
            for authority in (f"self.test:{admin}", f"127.0.0.1:{pb}", f"self.test:{pb}"):
                s, status, _ = connect(gw.ports[name], authority)
                s.close()
                assert status == 403, (name, authority)
        assert gw.admin("/v1/quarantine")[1] == b'{"quarantined":[]}\n'
        rules = {x["rule"] for x in gw.wait_log(30) if x["decision"] == "deny"}
        assert rules == {"self:gateway", "ssrf:unspecified"}  # 0.0.0.0 is not granted at all
        no_traceback(gw)


def test_the_control_plane_is_never_dialled(loop_dns: StaticDns, counter: Counter) -> None:
    """``--control-plane self.test``: refused by name and by its address, on any port."""
    pa = free_ports(1)[0]
    policy = make_policy(wide("a", pa, [counter.port]))
    with GatewayProcess(policy, resolver=loop_dns.address,
                        extra_args=("--control-plane", "self.test")) as gw:
        for url in (f"http://self.test:{counter.port}/", f"http://127.0.0.1:{counter.port}/"):
            status, headers, _ = request(gw.ports["a"], "GET", url)
            assert status == 403 and headers["x-corral-reason"] == reasons.FORBIDDEN_ADDRESS
        assert counter.accepted == 0
        assert {x["rule"] for x in gw.wait_log(2)} == {"self:control_plane"}
        no_traceback(gw)
