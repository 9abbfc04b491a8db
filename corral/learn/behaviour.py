"""Behaviour flags: what an agent does with a destination, not what the destination is called.

Sits between the store's per-day and per-hour aggregates (``queries.days_of``/``hours_of``) and
``build.py``, which adds these flags to the destinations under review (new, denied, and those
with heavy upload days). Each flag carries its figures; thresholds are ``ReviewOptions``.

- ``upload``: many bytes sent in the window, at least as many as came back (up/down ratio).
- ``new-dest-upload``: bytes sent to a destination first seen in the window.
- ``beacon``: requests in (nearly) every hour of several days at a steady rate: the spread of
  the hourly counts is far below what independent requests give (index of dispersion ~ 1).
- ``one-pod``: of an agent running several pods, one alone talks to the destination.
- ``growth``: the daily upload rises across the window.
- ``off-hours``: requests in hours the agent was never active in before the window.
"""

from __future__ import annotations

import itertools
import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from corral.learn.render import human_bytes as format_bytes
from corral.learn.report import ReviewOptions
from corral.learn.risk import Flag
from corral.store import queries
from corral.store.access import unpack_hours

Key = tuple[str, str, int]
FULL_DAY_HOURS = 20  # a day counts for beaconing when the destination was active this many hours


@dataclass(slots=True)
class Usage:
    """One agent x destination over the window."""

    days: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # requests, up, down
    per_hour: dict[int, list[int]] = field(default_factory=dict)
    hours: int = 0  # mask of the UTC hours with any request


def _usage(conn: sqlite3.Connection, keys: list[Key], since_day: int) -> dict[Key, Usage]:
    out: dict[Key, Usage] = defaultdict(Usage)
    for agent, host, port, day, req, up, down in queries.days_of(conn, keys, since_day):
        out[(agent, host, port)].days[day] = (req, up, down)
    for agent, host, port, day, mask, packed in queries.hours_of(conn, keys, since_day):
        u = out[(agent, host, port)]
        u.per_hour[day] = unpack_hours(packed)
        u.hours |= mask
    return out


def upload(u: Usage, opts: ReviewOptions) -> Flag | None:
    up = sum(d[1] for d in u.days.values())
    down = sum(d[2] for d in u.days.values())
    if up < opts.upload_min_bytes or up < down:
        return None
    ratio = f"{up / down:.1f}x what came back" if down else "nothing came back"
    return Flag("upload", f"{format_bytes(up)} sent in the window, {ratio}")


def new_upload(u: Usage, first_seen: str | None, opts: ReviewOptions) -> Flag | None:
    up = sum(d[1] for d in u.days.values())
    if first_seen is None or up < opts.anomaly_min_bytes:
        return None
    return Flag("new-dest-upload", f"{format_bytes(up)} sent to a destination first seen "
                                   f"{first_seen[:10]}")


def beacon(u: Usage, opts: ReviewOptions) -> Flag | None:
    """Steady requests in (nearly) every hour: hourly counts with a dispersion (variance/mean)
    far below the ~1 of independent requests."""
    full = [counts for counts in u.per_hour.values()
            if 24 - counts.count(0) >= FULL_DAY_HOURS]
    if len(full) < opts.beacon_days:
        return None
    n = 24 * len(full)
    mean = sum(map(sum, full)) / n
    if mean < 1:
        return None
    dispersion = (sum(x * x for counts in full for x in counts) / n - mean * mean) / mean
    if dispersion > opts.beacon_dispersion:
        return None
    return Flag("beacon", f"requests in every hour of {len(full)} days, {mean:.1f} an hour "
                          f"(about one every {60 / mean:.0f} min), dispersion {dispersion:.2f} "
                          "where independent requests give ~1: automated and regular")


def one_pod(pods: int, agent_pods: int) -> Flag | None:
    if agent_pods < 3 or pods != 1:
        return None
    return Flag("one-pod", f"reached from 1 of the agent's {agent_pods} pods in the window")


def growth(u: Usage, opts: ReviewOptions) -> Flag | None:
    ups = [u.days[d][1] for d in sorted(u.days) if u.days[d][1] > 0]
    if len(ups) < 4:
        return None
    first, last = statistics.fmean(ups[:2]), statistics.fmean(ups[-2:])
    rising = sum(b > a for a, b in itertools.pairwise(ups)) / (len(ups) - 1)
    if last < opts.growth_min_bytes or last < opts.growth_factor * first or rising < 0.7:
        return None
    return Flag("growth", f"daily upload grew from {format_bytes(first)} to "
                          f"{format_bytes(last)} over {len(ups)} days")


def off_hours(u: Usage, usual: tuple[int, int], opts: ReviewOptions) -> Flag | None:
    mask, days = usual
    if days < opts.min_baseline_days:
        return None
    outside = [h for h in range(24) if u.hours >> h & 1 and not mask >> h & 1]
    if len(outside) < 2:
        return None
    return Flag("off-hours", f"requests at {_hours(outside)} UTC, hours the agent was never "
                             f"active in during {days} days before the window")


def _hours(hours: list[int]) -> str:
    return ", ".join(f"{h:02d}h" for h in hours[:8]) + (" ..." if len(hours) > 8 else "")


def behaviour_flags(conn: sqlite3.Connection, opts: ReviewOptions, since_day: int, *,
                    keys: Iterable[Key], first_seen: dict[Key, str],
                    pods: dict[Key, int]) -> dict[Key, list[Flag]]:
    """The behaviour flags of each key (only keys with at least one flag)."""
    wanted = sorted(set(keys))
    usage = _usage(conn, wanted, since_day)
    agents = sorted({k[0] for k in wanted})
    alone = {k[0] for k in wanted if pods.get(k) == 1}  # only their pod count matters
    agent_pods = {a: queries.agent_pods(conn, a, since_day) if a in alone else 0
                  for a in agents}
    usual = {a: queries.agent_hours(conn, a, since_day - opts.baseline_days, since_day)
             for a in agents}
    out: dict[Key, list[Flag]] = {}
    for key in wanted:
        u = usage.get(key, Usage())
        found = [f for f in (upload(u, opts), new_upload(u, first_seen.get(key), opts),
                             beacon(u, opts), one_pod(pods.get(key, 0), agent_pods[key[0]]),
                             growth(u, opts), off_hours(u, usual[key[0]], opts))
                 if f is not None]
        if found:
            out[key] = found
    return out
