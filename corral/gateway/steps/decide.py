"""Step 3, decide: the pure ``corral.decide.egress.decide`` on the agent's rules.

Deny -> 403 with the readable body; learn mode's ``would_deny`` passes on (logged as such).
"""

from __future__ import annotations

from corral.decide.egress import EgressRequest, decide
from corral.gateway.flow import Flow, Refusal


class Decide:
    async def request(self, flow: Flow) -> Refusal | None:
        assert flow.rules is not None and flow.target is not None
        d = decide(flow.rules, EgressRequest(flow.target.kind, flow.host, flow.port))
        flow.host = d.host
        flow.decision = d.outcome
        flow.reason = d.reason
        flow.rule = d.rule
        if d.ip is not None:
            flow.addrs = (d.ip,)
        if d.outcome == "deny":
            return Refusal(403, d.reason, d.rule)
        return None
