"""Step 3, decide: the pure ``corral.decide.egress.decide`` on the agent's rules.

Deny -> 403 with the readable body; learn mode's ``would_deny`` passes on (logged as such).
A CONNECT to a port the name may use only for plain HTTP (``allowed.test`` and ``:80``: Node's
undici and websockets send ``http://`` and ``ws://`` that way) is allowed with
``Flow.http_only``: the server then reads plain HTTP inside and decides each request again.
"""

from __future__ import annotations

from corral.decide import reasons
from corral.decide.egress import AgentRules, Decision, EgressRequest, Kind, decide
from corral.gateway.flow import Flow, Refusal


def allows_http(flow: Flow) -> bool:
    """May plain HTTP reach this CONNECT's destination (an HTTP port of an allowed name)?"""
    if flow.http_only:
        return True
    rules = flow.rules
    return rules is not None and decide(rules, EgressRequest("http", flow.host,
                                                             flow.port)).allowed

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
        if d.reason == reasons.PORT_NOT_ALLOWED and flow.kind == "connect":
            plain = self._decide(flow.rules, "http", flow.host, flow.port)
            if plain.allowed:
                d = plain
                flow.http_only = True
        flow.host = d.host
        flow.decision = d.outcome
        flow.reason = d.reason
        flow.rule = d.rule
        if d.ip is not None:
            flow.addrs = (str(d.ip),)
        if d.outcome == "deny":
            return Refusal(403, d.reason, d.rule)
        return None
