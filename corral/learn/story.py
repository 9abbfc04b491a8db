"""One story per agent: every signal of the window joined, weighed and ranked.

Sits after ``build.py`` has found the report's sections: risky new and denied destinations
(weighed by their flags), volume anomalies, days with a spike of denials, and Falco firings of
corral's own rules or of rules that fired with an attack. Agents are ranked by the summed
weight, then by bytes sent; a reviewer reads the riskiest agent's whole story in one row.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from corral.learn.falco_tuning import is_corral_rule
from corral.learn.render import human_bytes
from corral.learn.report import (
    AgentActivity,
    AgentStory,
    Anomaly,
    DeniedDestination,
    FalcoNoise,
    IncidentRef,
    NewDestination,
    ReviewOptions,
    Signal,
)
from corral.learn.risk import risk_score
from corral.store import queries
from corral.store.access import day_iso

SPIKE_MIN = 20  # denials a day before a spike counts
SPIKE_FACTOR = 5.0  # times the agent's median denials per active day before the window


def _kinds(d: NewDestination | DeniedDestination) -> str:
    return ", ".join(sorted({f.kind for f in d.flags}))


def _name(d: NewDestination | DeniedDestination) -> str:
    what = "addresses" if "/" in d.host else "hosts"
    return f"{d.host}:{d.port}" + (f" ({len(d.hosts)} {what})" if d.hosts else "")


def destination_signals(new: Sequence[NewDestination],
                        denied: Sequence[DeniedDestination]) -> list[tuple[str, Signal]]:
    out = [(d.agent, Signal("destination", risk_score(d.flags),
                            f"new {_name(d)} from {d.first_seen[:16]}, {d.requests} requests, "
                            f"{human_bytes(d.bytes_up)} out [{_kinds(d)}]"))
           for d in new if d.flags]
    shown = {(d.agent, d.host, d.port) for d in new}
    out += [(d.agent, Signal("denied", risk_score(d.flags),
                             f"{d.deny + d.would_deny} requests to {_name(d)} denied, last "
                             f"{d.last_seen[:16]} [{_kinds(d)}]"))
            for d in denied if d.flags and (d.agent, d.host, d.port) not in shown]
    return out


def anomaly_signals(found: Sequence[Anomaly]) -> list[tuple[str, Signal]]:
    return [(a.agent, Signal("anomaly", 3, f"{human_bytes(a.bytes_up)} to {a.host}:{a.port} on "
                                           f"{a.day}, {a.ratio:.0f}x its median day"))
            for a in found]


def falco_signals(conn: sqlite3.Connection, since_day: int,
                  noisy: Sequence[FalcoNoise]) -> list[tuple[str, Signal]]:
    held = {(n.agent, n.rule): n for n in noisy if n.held and not is_corral_rule(n.rule)}
    out = [(n.agent, Signal("falco", 3, f"Falco '{n.rule}' fired {n.count} times; {n.held}"))
           for n in held.values()]
    for agent, rule, _prio, count in queries.falco_window(conn, since_day):
        if is_corral_rule(rule):
            out.append((agent, Signal("falco", 2, f"Falco '{rule}' fired {count} times")))
    return out


def spike_signals(conn: sqlite3.Connection, opts: ReviewOptions,
                  since_day: int) -> list[tuple[str, Signal]]:
    per_agent: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for agent, day, denials in queries.agent_denials(conn, since_day - opts.baseline_days):
        per_agent[agent].append((day, denials))
    out = []
    for agent, days in per_agent.items():
        before = [n for d, n in days if d < since_day]
        median = statistics.median(before) if before else 0
        day, worst = max(((d, n) for d, n in days if d >= since_day), key=lambda x: x[1],
                         default=(0, 0))
        if worst >= SPIKE_MIN and worst >= SPIKE_FACTOR * max(median, 1):
            out.append((agent, Signal("denial-spike", 2, f"{worst} denials on {day_iso(day)} "
                                                         f"(median day before: {median:g})")))
    return out


def incident_signals(incidents: Sequence[IncidentRef]) -> list[tuple[str, Signal]]:
    out = []
    for i in incidents:
        when = datetime.fromtimestamp(i.first_seen, UTC).strftime("%Y-%m-%d %H:%M")
        out.append((i.agent, Signal("incident", 3,
                                    f"incident {i.id} ({i.severity}, {i.rule}) from {when}")))
    return out


def stories(signals: Sequence[tuple[str, Signal]],
            activity: Sequence[AgentActivity]) -> list[AgentStory]:
    """Each agent's signals, heaviest first; agents ranked by summed weight, then bytes."""
    by_agent: dict[str, list[Signal]] = defaultdict(list)
    for agent, s in signals:
        by_agent[agent].append(s)
    sent = {a.agent: a.bytes_up for a in activity}
    out = [AgentStory(agent, sum(s.weight for s in found), sent.get(agent, 0),
                      tuple(sorted(found, key=lambda s: (-s.weight, s.kind, s.text))))
           for agent, found in by_agent.items()]
    return sorted(out, key=lambda s: (-s.score, -s.bytes_up, s.agent))
