"""Policy lint: warnings (never errors) for entries that are legal but risky.

Returns (path, message) pairs; the loader attaches file and line. Pure.
"""

from __future__ import annotations

from corral.model.channels import channels_opened_by
from corral.model.domains import is_public_suffix
from corral.model.errors import Loc
from corral.model.policy import Agent, Policy


def _old_cidrs(i: int, agent: Agent) -> list[tuple[Loc, str]]:
    """``allow_cidrs`` once also opened raw-IP destinations; it now only means resolve_into."""
    return [(
        ("spec", "agents", i, "egress", "allow_cidrs", j),
        f"allow_cidrs is renamed resolve_into and no longer admits IP-literal destinations: "
        f"{net} only lets allowed names resolve into it. Move it to egress.resolve_into; to "
        f"reach an address of it directly, add an egress.allow entry with its port, "
        f"e.g. '{net}:443'",
    ) for j, net in enumerate(agent.egress.allow_cidrs)]


def lint_policy(policy: Policy) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    for i, agent in enumerate(policy.spec.agents):
        for j, pattern in enumerate(agent.egress.names):
            loc: Loc = ("spec", "agents", i, "egress", "allow", j)
            for ch in channels_opened_by(pattern):
                out.append((loc, f"{pattern} opens {ch.domain} ({ch.category}): {ch.reason}"))
            if not pattern.wildcard and is_public_suffix(pattern.name):
                out.append((loc, f"{pattern} is a public suffix, not a registrable domain"))
        denied = {str(p) for p in agent.egress.deny}
        for j, pattern in enumerate(agent.egress.names):
            if str(pattern) in denied:
                out.append((
                    ("spec", "agents", i, "egress", "allow", j),
                    f"{pattern} is also denied; deny wins, so this entry has no effect",
                ))
        out.extend(_old_cidrs(i, agent))
        if agent.egress.mode == "learn":
            out.append((
                ("spec", "agents", i, "egress", "mode"),
                f"agent {agent.name!r} is in learn mode: every destination is allowed and "
                "logged as would_deny; switch to enforce once `corral review` shows it is stable",
            ))
    if not policy.spec.registries:
        out.append((("spec", "registries"),
                    "no approved registries: admission refuses every image"))
    return out
