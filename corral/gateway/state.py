"""The policy as the gateway uses it: an immutable snapshot swapped whole on reload.

A snapshot holds the parsed policy, its version (short hash of the file bytes), listener port ->
agent, and each agent's ``AgentRules`` with the quarantine overlay applied. New flows read the
current snapshot; a flow keeps the one it started with, so reloads never disturb open tunnels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import orjson

from corral.decide.egress import AgentRules
from corral.model import records
from corral.model.load import parse_policy
from corral.model.policy import GatewayLimits, Policy


@dataclass(frozen=True, slots=True)
class Snapshot:
    policy: Policy
    version: str
    agent_by_port: dict[int, str]
    rules: dict[str, AgentRules]
    limits: GatewayLimits
    quarantined: frozenset[str]

    def with_quarantine(self, agents: Iterable[str]) -> Snapshot:
        q = frozenset(agents)
        return replace(self, quarantined=q, rules=_rules(self.policy, q))


def build_snapshot(policy: Policy, version: str, quarantined: Iterable[str] = ()) -> Snapshot:
    q = frozenset(quarantined)
    spec = policy.spec
    return Snapshot(
        policy=policy, version=version,
        agent_by_port={port: name for name, port in spec.listener_ports().items()},
        rules=_rules(policy, q), limits=spec.gateway.limits, quarantined=q,
    )


def _rules(policy: Policy, quarantined: frozenset[str]) -> dict[str, AgentRules]:
    return {a.name: AgentRules.from_agent(a, quarantined=a.name in quarantined)
            for a in policy.spec.agents}


def load_snapshot(path: str, quarantined: Iterable[str] = ()) -> Snapshot:
    """Read and validate the policy file once; ``PolicyError`` when it is invalid."""
    with open(path, "rb") as fh:
        data = fh.read()
    policy, _warnings = parse_policy(data.decode("utf-8"), path)
    return build_snapshot(policy, records.policy_version(data), quarantined)


def with_ports(snap: Snapshot, ports: dict[str, int]) -> Snapshot:
    """The same snapshot listening on other ports (tests bind free ports)."""
    return replace(snap, agent_by_port={p: a for a, p in ports.items()})


def parse_overlay(data: bytes) -> frozenset[str]:
    """``{"quarantined": ["agent", ...]}`` -> agent names; ValueError when malformed."""
    doc = orjson.loads(data) if data.strip() else {}
    names = doc.get("quarantined", []) if isinstance(doc, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError('overlay must be {"quarantined": ["agent", ...]}')
    return frozenset(names)


def dump_overlay(agents: Iterable[str]) -> bytes:
    return orjson.dumps({"quarantined": sorted(agents)}, option=orjson.OPT_INDENT_2) + b"\n"
