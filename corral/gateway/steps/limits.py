"""Step 4, limits: requests per minute, outbound bytes per hour, open tunnels per agent -> 429.

Enforced in learn mode too: they protect the gateway and cap exfiltration, they are not the
allowlist being learnt. ``Release`` (a done hook) returns the tunnel slot when a tunnel ends.
"""

from __future__ import annotations

from corral.decide import reasons
from corral.gateway.flow import Flow, Refusal
from corral.gateway.metrics import GatewayMetrics
from corral.gateway.steps.identify import LimitBook

__all__ = ["LimitBook", "Limits", "Release"]


class Limits:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def request(self, flow: Flow) -> Refusal | None:
        lim = flow.limits
        assert lim is not None and flow.rules is not None
        if lim.rate is not None:
            wait = lim.rate.take()
            if wait:
                return Refusal(429, reasons.RATE_LIMITED, "rate", retry_after=wait)
        if lim.quota is not None:
            wait = lim.quota.retry_after()
            declared = flow.head.content_length if flow.head is not None else 0
            if not wait and lim.quota.used + declared > lim.quota.limit:
                wait = lim.quota.seconds_left()
            if wait:
                return Refusal(429, reasons.QUOTA_EXCEEDED, "quota", retry_after=wait)
        if flow.kind == "connect":
            cap = flow.snap.policy.spec.agent(flow.agent).egress.max_tunnels
            if lim.tunnels >= cap:
                return Refusal(429, reasons.TUNNEL_LIMIT, f"max_tunnels:{cap}", retry_after=1)
            lim.tunnels += 1
            flow.tunnel_held = True
            self._metrics.tunnel(flow.agent, 1)
        return None


class Release:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def done(self, flow: Flow) -> None:
        if flow.tunnel_held and flow.limits is not None:
            flow.limits.tunnels -= 1
            flow.tunnel_held = False
            self._metrics.tunnel(flow.agent, -1)
