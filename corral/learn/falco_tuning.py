"""Falco tuning: the noisiest rules per agent and an ``exceptions`` entry for the benign pattern.

Sits between the store (``falco_day``/``falco_sig`` aggregates) and the review. A rule that fires
at least ``falco_min`` times in the window, where one signature (process, file, image) explains at
least ``falco_share`` of the firings, gets a suggested exception naming exactly that signature.
The suggestion is written as a Falco rules file with ``override: {exceptions: append}``.

Never silence an attack: no exception for corral's own rules (they are the agent's declared
boundary: change the policy's ``processes`` instead), nor for a rule that fired in the same UTC
hour as one of the agent's denials or a request to a risky destination (``alarms``). Counts and
shares are those of the window.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from corral.learn.report import FalcoException, FalcoNoise, ReviewOptions
from corral.store import queries
from corral.store.access import day_iso

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


Alarms = dict[str, dict[int, int]]  # agent -> day -> UTC hours with a denial or risky request


def is_corral_rule(rule: str) -> bool:
    """A rule compiled by corral from the policy (``corral <kind> [agent]`` or
    ``corral: <agent>: ...``)."""
    return rule.startswith(("corral ", "corral:"))


def _coincidence(fired: dict[int, int], alarms: dict[int, int]) -> str | None:
    for day in sorted(fired):
        common = fired[day] & alarms.get(day, 0)
        if common:
            hour = (common & -common).bit_length() - 1
            return f"{day_iso(day)} {hour:02d}:00 UTC"
    return None


def held_reason(conn: sqlite3.Connection, agent: str, rule: str, since_day: int,
                alarms: Alarms) -> str:
    """Why no exception may be suggested for the rule ("" when one may)."""
    if is_corral_rule(rule):
        return ("corral's own rule: if the process is legitimate, add it to the agent's "
                "`processes` in the policy")
    when = _coincidence(queries.falco_hours(conn, agent, rule, since_day), alarms.get(agent, {}))
    if when is not None:
        return (f"fired in the same hour as a denial or risky request of {agent} ({when}): "
                "investigate before silencing")
    return ""


def noisy_rules(conn: sqlite3.Connection, opts: ReviewOptions, since_day: int,
                alarms: Alarms | None = None) -> list[FalcoNoise]:
    shown: dict[str, int] = {}
    out = []
    for agent, rule, priority, count in queries.falco_window(conn, since_day):
        if count < opts.falco_min or shown.get(agent, 0) >= opts.falco_top:
            continue
        shown[agent] = shown.get(agent, 0) + 1
        held = held_reason(conn, agent, rule, since_day, alarms or {})
        sigs = queries.falco_signatures_window(conn, agent, rule, since_day)
        exc = None if held else exception_for(rule, sigs, opts)
        out.append(FalcoNoise(agent, rule, priority, count, exc, held))
    return sorted(out, key=lambda n: (n.agent, -n.count, n.rule))


def exception_for(rule: str, sigs: Sequence[tuple[str, str, str, str, int]],
                  opts: ReviewOptions) -> FalcoException | None:
    """An exception for the dominant signature, or None when the firings are not one pattern."""
    total = sum(s[4] for s in sigs)
    if not sigs or total == 0:
        return None
    proc, _parent, file, image, count = sigs[0]
    share = count / total
    if share < opts.falco_share or not proc:
        return None
    pairs = [("proc.name", proc)]
    if file:
        pairs.append(("fd.name", file))
    if image:
        pairs.append(("container.image.repository", image))
    digest = hashlib.sha256("\0".join(v for _, v in pairs).encode()).hexdigest()[:8]
    name = _NAME_UNSAFE.sub("_", f"corral_review_{proc}_{digest}")
    return FalcoException(rule, name, tuple(f for f, _ in pairs), tuple(v for _, v in pairs),
                          round(share, 3))


def rules_file_entries(exceptions: Sequence[FalcoException]) -> list[dict[str, Any]]:
    """Falco rules-file items appending the exceptions to their rules (one item per rule)."""
    by_rule: dict[str, list[FalcoException]] = {}
    for exc in exceptions:
        by_rule.setdefault(exc.rule, []).append(exc)
    return [
        {
            "rule": rule,
            "exceptions": [
                {"name": e.name, "fields": list(e.fields), "comps": ["="] * len(e.fields),
                 "values": [list(e.values)]}
                for e in excs
            ],
            "override": {"exceptions": "append"},
        }
        for rule, excs in sorted(by_rule.items())
    ]
