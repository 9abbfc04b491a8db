"""One request or tunnel as it moves through the steps: what was asked, decided, dialled, sent.

``server`` creates a ``Flow`` per request head, the steps fill it in, and the log step turns it
into the canonical access line once the flow ends. Slots keep 10,000 idle tunnels small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.model import records as R
from corral.model.records import AccessRecord, Outcome

if TYPE_CHECKING:
    from corral.decide.egress import AgentRules
    from corral.gateway.protocol.http import RequestHead, Target
    from corral.gateway.ratelimit import AgentLimits
    from corral.gateway.state import Snapshot


@dataclass(frozen=True, slots=True)
class Refusal:
    """A step's answer that ends the flow: status and reason for the reply and the log.

    ``deny`` False keeps the decision as decided (a failure after an allow, e.g. DNS or dial).
    """

    status: int
    reason: str
    rule: str | None = None
    detail: str | None = None
    retry_after: int | None = None
    deny: bool = True


class Flow:
    __slots__ = (
        "addrs",
        "agent",
        "bytes_down",
        "bytes_up",
        "carrier",
        "client",
        "decision",
        "ended",
        "head",
        "host",
        "http_only",
        "kind",
        "limits",
        "listen_port",
        "method",
        "path",
        "port",
        "reason",
        "resolved",
        "rule",
        "rules",
        "snap",
        "sni",
        "started",
        "status",
        "target",
        "tunnel_held",
        "wall",
    )

    def __init__(self, snap: Snapshot, listen_port: int, client: str, head: RequestHead | None,
                 *, started: float, wall: float) -> None:
        self.snap = snap
        self.listen_port = listen_port
        self.agent: str = snap.agent_by_port.get(listen_port, "")
        self.client = client
        self.head = head
        self.method: str = head.method if head is not None else ""
        self.started = started
        self.wall = wall
        self.rules: AgentRules | None = None
        self.limits: AgentLimits | None = None
        self.target: Target | None = None
        self.kind: str = "connect" if self.method == "CONNECT" else "http"
        self.host: str = ""
        self.port: int = 0
        self.path: str | None = None
        self.decision: Outcome = "deny"
        self.reason: str = ""
        self.rule: str | None = None
        self.addrs: tuple[str, ...] = ()  # vetted addresses, the only ones dialled
        self.resolved: str | None = None
        self.sni: str | None = None
        self.bytes_up = 0
        self.bytes_down = 0
        self.status = 0
        self.ended = False
        self.tunnel_held = False
        self.http_only = False  # a CONNECT allowed only because plain HTTP may use its port
        self.carrier = False  # a CONNECT that carried plain HTTP: its requests are the lines

    def refuse(self, refusal: Refusal) -> None:
        if refusal.deny:
            self.decision = "deny"
        self.reason = refusal.reason
        if refusal.rule is not None or refusal.deny:
            self.rule = refusal.rule if refusal.rule is not None else self.rule
        self.status = refusal.status

    def record(self, time_text: str, duration_ms: float) -> AccessRecord:
        return {
            R.TIME: time_text, R.KIND: R.KIND_ACCESS, R.AGENT: self.agent, R.CLIENT: self.client,
            R.METHOD: self.method, R.HOST: self.host, R.PORT: self.port, R.PATH: self.path,
            R.DECISION: self.decision, R.REASON: self.reason, R.RULE: self.rule,
            R.RESOLVED: self.resolved, R.SNI: self.sni, R.BYTES_UP: self.bytes_up,
            R.BYTES_DOWN: self.bytes_down, R.DURATION_MS: duration_ms, R.STATUS: self.status,
            R.POLICY_VERSION: self.snap.version,
        }
