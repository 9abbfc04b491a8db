"""Step 1, identify: the listener port is the agent's identity; no header is trusted.

Binds the flow to its agent's rules (quarantine overlay already applied in the snapshot) and to
the agent's limiters, which live in the ``LimitBook`` across policy reloads.
"""

from __future__ import annotations

from corral.decide import reasons
from corral.gateway.flow import Flow, Refusal
from corral.gateway.ratelimit import AgentLimits, Clock
from corral.gateway.sharedlimits import LimitPlan, build


class LimitBook:
    """Agent name -> limiters; a limiter is rebuilt only when that agent's limits change."""

    def __init__(self, clock: Clock, plan: LimitPlan | None = None) -> None:
        self._clock = clock
        self._plan = plan or LimitPlan()
        self._by_agent: dict[str, AgentLimits] = {}

    def get(self, agent: str, per_minute: int | None, bytes_per_hour: int | None) -> AgentLimits:
        found = self._by_agent.get(agent)
        if found is None or found.key != (per_minute, bytes_per_hour):
            tunnels = found.tunnels if found is not None else 0
            found = build(agent, per_minute, bytes_per_hour, self._clock, self._plan)
            found.tunnels = tunnels
            self._by_agent[agent] = found
        return found


class Identify:
    def __init__(self, book: LimitBook) -> None:
        self._book = book

    def request(self, flow: Flow) -> Refusal | None:
        rules = flow.snap.rules.get(flow.agent)
        if rules is None:
            return Refusal(403, reasons.NOT_IN_ALLOWLIST, "no-agent-on-this-port")
        flow.rules = rules
        egress = flow.snap.policy.spec.agent(flow.agent).egress
        flow.limits = self._book.get(
            flow.agent, egress.rate.requests_per_minute if egress.rate else None,
            egress.quota.bytes_out_per_hour if egress.quota else None)
        return None
