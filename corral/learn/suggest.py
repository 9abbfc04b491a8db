"""Policy suggestions from a review: allow what is benign and needed, drop what is unused,
switch stable learn-mode agents to enforce.

Sits between ``report.Report`` and ``apply.py``. Pure: each suggestion names the agent, the
policy field, the value, why, and whether it is risky. Never loosen under suspicion: an allow
suggestion is risky when its destination carries any risk or behaviour flag, or when its agent
shows other signals in the window (risky destinations, volume anomalies); risky suggestions are
listed but only applied with ``--include-risky``. Names that only mean something inside one
network (loopback, private, single-label) and IP literals are never suggested at all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from corral.decide import reasons
from corral.learn.report import DeniedDestination, Report
from corral.learn.risk import Flag, not_an_allow_entry
from corral.model.channels import CATEGORIES
from corral.model.policy import Policy

Kind = Literal["add-allow", "remove-allow", "narrow-allow", "add-deny", "enforce"]
_SUGGESTIBLE = (reasons.NOT_IN_ALLOWLIST, reasons.PORT_NOT_ALLOWED)


@dataclass(frozen=True, slots=True)
class Suggestion:
    kind: Kind
    agent: str
    field: str  # allow | allow_cidrs | deny | mode
    value: str
    reason: str
    risky: bool = False
    replacement: tuple[str, ...] = ()  # narrow-allow: the entries that replace ``value``


def entry_for(host: str, port: int) -> str:
    """The allow entry for a destination: the bare name on the default ports, else host:port."""
    return host if port in (80, 443) else f"{host}:{port}"


Signals = dict[str, list[str]]  # agent -> what else it did in the window


def agent_signals(report: Report) -> Signals:
    """Per agent, the signals in the window that forbid loosening its boundary."""
    out: dict[str, dict[str, None]] = defaultdict(dict)
    flagged = [(d.agent, d.host, d.flags) for d in report.new_destinations if d.flags]
    flagged += [(d.agent, d.host, d.flags) for d in report.denied if d.flags]
    for agent, host, flags in flagged:
        out[agent][f"{host} ({', '.join(sorted({f.kind for f in flags}))})"] = None
    for a in report.anomalies:
        out[a.agent][f"volume anomaly to {a.host} on {a.day}"] = None
    for st in report.stories:
        for sig in st.signals:
            if sig.weight > 0:
                out[st.agent][sig.text] = None
    return {agent: list(found) for agent, found in out.items()}


def _why(agent: str, flags: tuple[Flag, ...], signals: Signals) -> tuple[str, bool]:
    """The suggestion's risk part and whether it is risky."""
    if flags:
        return "; ".join(f"{f.kind}: {f.reason}" for f in flags), True
    if agent in signals:
        found = signals[agent]
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        return (f"agent {agent} has correlated signals in the window: "
                f"{', '.join(found[:3])}{more}"), True
    return "no risk flag", False


def _add(d: DeniedDestination, signals: Signals, when: str = "in the window") -> Suggestion | None:
    if d.verdict.reason not in _SUGGESTIBLE or not_an_allow_entry(d.host):
        return None
    seen = f"{d.deny + d.would_deny} requests {'would be ' if d.would_deny else ''}denied"
    why, risky = _why(d.agent, d.flags, signals)
    return Suggestion("add-allow", d.agent, "allow", entry_for(d.host, d.port),
                      f"{seen} {when}, last {d.last_seen}; {why}", risky)


def _groups(report: Report,
            signals: Signals) -> tuple[list[Suggestion], set[tuple[str, str, int]]]:
    """One suggestion per group of many new hosts under one domain, and the grouped members."""
    out: list[Suggestion] = []
    members: set[tuple[str, str, int]] = set()
    for d in report.new_destinations:
        if not d.hosts:
            continue
        members.update((d.agent, h, d.port) for h in d.hosts)
        if d.verdict.reason in _SUGGESTIBLE and not not_an_allow_entry(d.host[2:]):
            why, risky = _why(d.agent, d.flags, signals)
            out.append(Suggestion("add-allow", d.agent, "allow", entry_for(d.host, d.port),
                                  f"{len(d.hosts)} new hosts under {d.host[2:]}; {why}",
                                  risky))
    return out, members


def tightening(report: Report) -> list[Suggestion]:
    """Narrow wildcards used for a few hosts to those hosts; deny a channel (paste, storage,
    tunnel, ...) newly reached under an allowed wildcard."""
    out = []
    for n in report.narrowings:
        closed = f"; no longer reaches {', '.join(n.dropped)} (risk flag)" if n.dropped else ""
        kind: Kind = "narrow-allow" if n.hosts else "remove-allow"
        out.append(Suggestion(kind, n.agent, "allow", n.entry,
                              f"used only for {', '.join(n.hosts) or 'flagged hosts'}: "
                              f"list them instead (least privilege){closed}",
                              replacement=n.hosts))
    for d in report.new_destinations:
        rule = d.verdict.rule or ""
        found = [f for f in d.flags if f.kind in CATEGORIES]
        if d.verdict.outcome == "allow" and rule.startswith("*.") and found:
            out.append(Suggestion("add-deny", d.agent, "deny", entry_for(d.host, d.port),
                                  f"newly reached under {rule}: {found[0].reason}"))
    return out


def _put(out: dict[tuple[str, str, str], Suggestion], s: Suggestion) -> None:
    """Keep one suggestion per (agent, field, value); a risky one wins over a safe one."""
    key = (s.agent, s.field, s.value)
    if key not in out or (s.risky and not out[key].risky):
        out[key] = s


def suggestions(report: Report, policy: Policy) -> list[Suggestion]:
    """All suggestions, safe ones first; at most one per (agent, field, value)."""
    agents = {a.name for a in policy.spec.agents}
    out: dict[tuple[str, str, str], Suggestion] = {}
    signals = agent_signals(report)
    grouped, members = _groups(report, signals)
    for d in report.denied:
        ours = d.agent in agents and (d.agent, d.host, d.port) not in members
        s = _add(d, signals) if ours else None
        if s is not None:
            _put(out, s)
    for s in grouped:
        if s.agent in agents:
            _put(out, s)
    for s in tightening(report):
        if s.agent in agents:
            _put(out, s)
    for u in report.unused:
        when = f"last used {u.last_used}" if u.last_used else "never used"
        out.setdefault((u.agent, u.field, u.entry), Suggestion(
            "remove-allow", u.agent, u.field, u.entry, f"{when} (least privilege)"))
    for r in report.readiness:
        if not r.ready:
            continue
        out.setdefault((r.agent, "mode", "enforce"), Suggestion(
            "enforce", r.agent, "mode", "enforce",
            f"{r.reason}; {r.would_deny} requests would have been denied in the window"))
        for d in r.would_block:  # keep what the agent used before the window working
            s = _add(d, signals, "since observation began (enforcing would block it)")
            if s is not None:
                _put(out, s)
    return sorted(out.values(), key=lambda s: (s.risky, s.agent, s.kind, s.value))
