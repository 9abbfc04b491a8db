"""Policy suggestions from a review: allow what is benign and needed, drop what is unused,
switch stable learn-mode agents to enforce.

Sits between ``report.Report`` and ``apply.py``. Pure: each suggestion names the agent, the
policy field, the value, why, and whether it is risky (a risk flag on the destination). Risky
suggestions are listed but only applied with ``--include-risky``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from corral.decide import reasons
from corral.learn.report import DeniedDestination, Report
from corral.model.domains import looks_like_ip
from corral.model.policy import Policy

Kind = Literal["add-allow", "remove-allow", "enforce"]
_SUGGESTIBLE = (reasons.NOT_IN_ALLOWLIST, reasons.PORT_NOT_ALLOWED)


@dataclass(frozen=True, slots=True)
class Suggestion:
    kind: Kind
    agent: str
    field: str  # allow | allow_cidrs | mode
    value: str
    reason: str
    risky: bool = False


def entry_for(host: str, port: int) -> str:
    """The allow entry for a destination: the bare name on the default ports, else host:port."""
    return host if port in (80, 443) else f"{host}:{port}"


def _add(d: DeniedDestination) -> Suggestion | None:
    if d.verdict.reason not in _SUGGESTIBLE or looks_like_ip(d.host):
        return None
    seen = f"{d.deny + d.would_deny} requests {'would be ' if d.would_deny else ''}denied"
    why = "; ".join(f.reason for f in d.flags) if d.flags else "no risk flag"
    return Suggestion("add-allow", d.agent, "allow", entry_for(d.host, d.port),
                      f"{seen} in the window, last {d.last_seen}; {why}", bool(d.flags))


def _groups(report: Report) -> tuple[list[Suggestion], set[tuple[str, str, int]]]:
    """One suggestion per group of many new hosts under one domain, and the grouped members."""
    out: list[Suggestion] = []
    members: set[tuple[str, str, int]] = set()
    for d in report.new_destinations:
        if not d.hosts:
            continue
        members.update((d.agent, h, d.port) for h in d.hosts)
        if d.verdict.reason in _SUGGESTIBLE:
            why = "; ".join(f.reason for f in d.flags) if d.flags else "no risk flag"
            out.append(Suggestion("add-allow", d.agent, "allow", entry_for(d.host, d.port),
                                  f"{len(d.hosts)} new hosts under {d.host[2:]}; {why}",
                                  d.risky))
    return out, members


def suggestions(report: Report, policy: Policy) -> list[Suggestion]:
    """All suggestions, safe ones first; at most one per (agent, field, value)."""
    agents = {a.name for a in policy.spec.agents}
    out: dict[tuple[str, str, str], Suggestion] = {}
    grouped, members = _groups(report)
    for d in report.denied:
        s = _add(d) if d.agent in agents and (d.agent, d.host, d.port) not in members else None
        if s is not None:
            out.setdefault((s.agent, s.field, s.value), s)
    for s in grouped:
        if s.agent in agents:
            out.setdefault((s.agent, s.field, s.value), s)
    for u in report.unused:
        when = f"last used {u.last_used}" if u.last_used else "never used"
        out.setdefault((u.agent, u.field, u.entry), Suggestion(
            "remove-allow", u.agent, u.field, u.entry, f"{when} (least privilege)"))
    for r in report.readiness:
        if r.ready:
            out.setdefault((r.agent, "mode", "enforce"), Suggestion(
                "enforce", r.agent, "mode", "enforce",
                f"{r.reason}; {r.would_deny} requests would have been denied in the window"))
    return sorted(out.values(), key=lambda s: (s.risky, s.agent, s.kind, s.value))
