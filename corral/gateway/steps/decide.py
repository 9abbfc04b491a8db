"""Step 3, decide: the pure ``corral.decide.egress.decide`` on the agent's rules.

Deny -> 403 with the readable body; learn mode's ``would_deny`` passes on (logged as such).
"""

from __future__ import annotations

from corral.decide.egress import AgentRules, Decision, EgressRequest, Kind, decide
from corral.gateway.flow import Flow, Refusal

MEMO_SIZE = 4096


class Decide:
    """Decisions are pure, so they are memoised per rules object (a reload makes new ones)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[int, str, str, int], tuple[AgentRules, Decision]] = {}

    def _decide(self, rules: AgentRules, kind: Kind, host: str, port: int) -> Decision:
        key = (id(rules), kind, host, port)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is rules:
            return hit[1]
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        d = decide(rules, EgressRequest(kind, host, port))
        self._memo[key] = (rules, d)
        return d

    def request(self, flow: Flow) -> Refusal | None:
        assert flow.rules is not None and flow.target is not None
        d = self._decide(flow.rules, flow.target.kind, flow.host, flow.port)
        flow.host = d.host
        flow.decision = d.outcome
        flow.reason = d.reason
        flow.rule = d.rule
        if d.ip is not None:
            flow.addrs = (str(d.ip),)
        if d.outcome == "deny":
            return Refusal(403, d.reason, d.rule)
        return None
