"""Falco tuning: the noisiest rules per agent and an ``exceptions`` entry for the benign pattern.

Sits between the store (``falco_day``/``falco_sig`` aggregates) and the review. A rule that fires
at least ``falco_min`` times in the window, where one signature (process, file, image) explains at
least ``falco_share`` of the firings, gets a suggested exception naming exactly that signature.
The suggestion is written as a Falco rules file with ``override: {exceptions: append}``.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from corral.learn.report import FalcoException, FalcoNoise, ReviewOptions
from corral.store import queries

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def noisy_rules(conn: sqlite3.Connection, opts: ReviewOptions, since_day: int) -> list[FalcoNoise]:
    shown: dict[str, int] = {}
    out = []
    for agent, rule, priority, count in queries.falco_window(conn, since_day):
        if count < opts.falco_min or shown.get(agent, 0) >= opts.falco_top:
            continue
        shown[agent] = shown.get(agent, 0) + 1
        sigs = queries.falco_signatures(conn, agent, rule, opts.since_text)
        out.append(FalcoNoise(agent, rule, priority, count, exception_for(rule, sigs, opts)))
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
