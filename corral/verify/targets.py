"""Which destinations a check uses for an agent, chosen from its policy. Pure.

Every choice is confirmed with the real decision function, so a check never expects a refusal the
policy would not give (or the reverse): an allowed target is one ``decide`` allows, a denied one is
one it denies in enforce mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.decide.egress import AgentRules, EgressRequest, decide
from corral.model.domains import DomainPattern
from corral.model.policy import Agent, Policy

PROBE_LABEL = "corral-verify"
FALLBACK_DENIED = "corral-verify-denied.example"


class NoTarget(ValueError):
    """The policy gives nothing to test with (e.g. no enforce-mode agent); says what is needed."""


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    why: str  # the policy entry it comes from

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


def pick_agent(policy: Policy, name: str | None = None) -> Agent:
    """The named agent, or the first enforce-mode agent with an allowlist."""
    if name is not None:
        try:
            return policy.spec.agent(name)
        except KeyError:
            names = ", ".join(a.name for a in policy.spec.agents)
            raise NoTarget(f"no agent named {name!r} in the policy (agents: {names})") from None
    for a in policy.spec.agents:
        if a.egress.mode == "enforce" and a.egress.names:
            return a
    raise NoTarget("no agent in enforce mode with an allowlist: the gateway refuses nothing "
                   "to test against; pass --agent NAME")


def _concrete(p: DomainPattern) -> str:
    return f"{PROBE_LABEL}.{p.name}" if p.wildcard else p.name


def _decision(agent: Agent, host: str, port: int) -> str:
    rules = AgentRules.from_agent(agent)
    return decide(rules, EgressRequest("connect", host, port)).outcome


def allowed(agent: Agent) -> Target:
    """A destination the agent may reach over CONNECT (first allow entry that decide allows)."""
    for p in agent.egress.names:
        host, port = _concrete(p), p.port or 443
        if _decision(agent, host, port) != "deny":
            return Target(host, port, f"egress.allow entry {p}")
    raise NoTarget(f"agent {agent.name!r} has no allow entry that decide() allows")


def denied(agent: Agent) -> Target:
    """A destination the gateway refuses: a deny entry if there is one, else an unlisted name."""
    candidates = [(_concrete(p), p.port or 443, f"egress.deny entry {p}")
                  for p in agent.egress.deny]
    candidates.append((FALLBACK_DENIED, 443, "not in egress.allow"))
    for host, port, why in candidates:
        if _decision(agent, host, port) == "deny":
            return Target(host, port, why)
    raise NoTarget(f"agent {agent.name!r} refuses nothing (learn mode allows every name)")
