"""The egress decision: ``decide(rules, request) -> Decision``. Pure, deny by default.

Every return carries a reason from ``reasons`` and, where a policy entry decided, that entry as
``rule``. Learn mode turns a policy denial into ``would_deny`` (allowed, logged); it never relaxes
the built-in guards (quarantine, invalid names, forbidden addresses), which the gateway checks
after resolution with ``addresses.vet``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from corral.decide import reasons
from corral.decide.addresses import IPAddress, IPNetwork, classify
from corral.model.domains import (
    AddressPattern,
    DomainError,
    PatternSet,
    looks_like_ip,
    normalise_host,
    parse_ip_literal,
)
from corral.model.policy import Agent
from corral.model.records import Outcome

Kind = Literal["connect", "http"]
DEFAULT_PORT: dict[Kind, int] = {"connect": 443, "http": 80}


@dataclass(frozen=True, slots=True)
class EgressRequest:
    """What the agent asked for, before any resolution."""

    kind: Kind
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str
    host: str  # normalised host (or the raw text when it is not a name)
    rule: str | None = None
    ip: IPAddress | None = None  # set when the request named an IP literal

    @property
    def allowed(self) -> bool:
        return self.outcome != "deny"


@dataclass(frozen=True, slots=True)
class AgentRules:
    """One agent's egress policy, indexed for matching. Built once per policy load."""

    name: str
    mode: Literal["enforce", "learn"]
    allow: PatternSet
    deny: PatternSet
    resolve_into: tuple[IPNetwork, ...] = ()  # allowed names may resolve into these ranges
    addresses: tuple[AddressPattern, ...] = ()  # IP-literal destinations, each with its port
    quarantined: bool = False
    sni_check: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_agent(cls, agent: Agent, *, quarantined: bool = False) -> AgentRules:
        e = agent.egress
        return cls(
            name=agent.name,
            mode=e.mode,
            allow=PatternSet(e.names),
            deny=PatternSet(e.deny),
            resolve_into=e.private_ranges,
            addresses=e.addresses,
            quarantined=quarantined,
            sni_check=e.sni_check,
        )


def _policy_denial(rules: AgentRules, host: str, reason: str, rule: str | None,
                   ip: IPAddress | None = None) -> Decision:
    outcome: Outcome = "would_deny" if rules.mode == "learn" else "deny"
    return Decision(outcome, reason, host, rule, ip)


def decide(rules: AgentRules, request: EgressRequest) -> Decision:  # noqa: PLR0911 - one return per reason is the point
    """Decide one request of one agent. Never raises; never does I/O."""
    if rules.quarantined:
        return Decision("deny", reasons.QUARANTINED, request.host.lower(), "quarantine")
    if looks_like_ip(request.host):
        return _decide_ip(rules, request)
    try:
        host = normalise_host(request.host)
    except DomainError:
        return Decision("deny", reasons.INVALID_HOST, request.host)
    for pattern in rules.deny.candidates(host):
        if pattern.port is None or pattern.port == request.port:
            return Decision("deny", reasons.DENIED_BY_RULE, host, str(pattern))
    named = rules.allow.candidates(host)
    default_port = DEFAULT_PORT[request.kind]
    for pattern in named:
        if pattern.matches_port(request.port, default_port):
            return Decision("allow", reasons.ALLOWED_BY_RULE, host, str(pattern))
    if named:
        return _policy_denial(rules, host, reasons.PORT_NOT_ALLOWED, str(named[0]))
    return _policy_denial(rules, host, reasons.NOT_IN_ALLOWLIST, None)


def _decide_ip(rules: AgentRules, request: EgressRequest) -> Decision:
    """An IP literal is a destination of its own: only an allow entry naming that address (or
    a CIDR holding it) with this port grants it. ``resolve_into`` never does: it only lets
    allowed *names* resolve into a range."""
    ip = parse_ip_literal(request.host)
    if ip is None:
        return Decision("deny", reasons.INVALID_HOST, request.host)
    text = str(ip)
    entries = [e for e in rules.addresses if e.matches(ip)]
    for entry in entries:
        if entry.port == request.port:
            return Decision("allow", reasons.ALLOWED_CIDR, text, str(entry), ip)
    category = classify(ip)
    if category is not None:  # a built-in guard: learn mode does not relax it
        return Decision("deny", reasons.FORBIDDEN_ADDRESS, text, f"ssrf:{category}", ip)
    if entries:
        return _policy_denial(rules, text, reasons.PORT_NOT_ALLOWED, str(entries[0]), ip)
    return _policy_denial(rules, text, reasons.IP_LITERAL, None, ip)
