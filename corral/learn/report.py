"""The weekly review as data: what changed in agents' behaviour, as frozen values.

Sits between the store's queries (``build.py`` fills these) and the outputs (``render.py`` text and
Markdown, ``html.py``, JSON via ``as_dict``) and ``suggest.py`` (policy changes). Nothing here does
I/O; every finding carries the reason a person needs to act on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from corral.learn.risk import Flag


@dataclass(frozen=True, slots=True)
class ReviewOptions:
    """Knobs of one review; ``now`` is injected (tests pass a fixed clock)."""

    now: datetime
    window: timedelta = timedelta(days=7)
    unused_days: int = 30  # allow entries unused this long are suggested for removal
    stable_days: int = 7  # learn-mode agents with no new destination this long may enforce
    baseline_days: int = 28  # days before the window that form an agent's own baseline
    min_baseline_days: int = 5  # fewer active baseline days: no anomaly verdict
    anomaly_min_bytes: int = 1 << 20  # daily bytes out below this are never anomalies
    anomaly_factor: float = 5.0  # at least this many times the baseline median
    anomaly_mads: float = 6.0  # and this many (scaled) MADs above it
    group_min: int = 5  # this many new hosts under one domain are shown as one group
    falco_min: int = 20  # Falco rule firings in the window before it counts as noisy
    falco_top: int = 3  # noisiest rules shown per agent
    falco_share: float = 0.8  # one pattern must explain this share to suggest an exception
    chart_days: int = 30
    upload_min_bytes: int = 10 << 20  # window upload from which up >= down is flagged
    beacon_days: int = 3  # full days of hourly requests before a steady rate is a beacon
    beacon_dispersion: float = 0.4  # hourly-count variance/mean at most this (random: ~1)
    growth_min_bytes: int = 256 << 10  # daily upload the window must end at to flag growth
    growth_factor: float = 3.0  # last days' upload at least this many times the first days'
    narrow_max: int = 3  # a wildcard used for at most this many hosts is suggested narrowed

    @property
    def since(self) -> datetime:
        return self.now - self.window

    @property
    def since_text(self) -> str:
        """Compared as text with stored RFC 3339 times (prefix without fraction or zone)."""
        return self.since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the current policy would do with a destination (from ``corral.decide``)."""

    outcome: str
    reason: str
    rule: str | None


@dataclass(frozen=True, slots=True)
class NewDestination:
    agent: str
    host: str  # a group is shown as ``*.<domain>``
    port: int
    first_seen: str
    last_seen: str
    requests: int
    bytes_up: int
    bytes_down: int
    pods: int
    allowed: int
    denied: int
    would_deny: int
    flags: tuple[Flag, ...]
    verdict: Verdict
    hosts: tuple[str, ...] = ()  # members of a group

    @property
    def risky(self) -> bool:
        return bool(self.flags)


@dataclass(frozen=True, slots=True)
class DeniedDestination:
    """A destination denied (or would-be denied) in the window: a candidate allow entry."""

    agent: str
    host: str
    port: int
    deny: int
    would_deny: int
    last_seen: str
    new: bool
    flags: tuple[Flag, ...]
    verdict: Verdict
    hosts: tuple[str, ...] = ()  # members of a group (a network on one day, or a domain)


@dataclass(frozen=True, slots=True)
class AgentActivity:
    agent: str
    mode: str  # enforce | learn | unknown (not in the policy)
    requests: int
    bytes_up: int
    bytes_down: int
    deny: int
    would_deny: int
    top_denied: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class UnusedEntry:
    agent: str
    entry: str
    field: str  # allow | allow_cidrs
    last_used: str | None


@dataclass(frozen=True, slots=True)
class Anomaly:
    agent: str
    host: str
    port: int
    day: str
    bytes_up: int
    median: float
    mad: float
    baseline_days: int

    @property
    def ratio(self) -> float:
        return self.bytes_up / self.median if self.median else float("inf")


@dataclass(frozen=True, slots=True)
class FalcoException:
    rule: str
    name: str
    fields: tuple[str, ...]
    values: tuple[str, ...]
    share: float


@dataclass(frozen=True, slots=True)
class FalcoNoise:
    agent: str
    rule: str
    priority: str
    count: int
    exception: FalcoException | None
    held: str = ""  # why no exception may be suggested (corral's own rule, coincidence)


@dataclass(frozen=True, slots=True)
class Readiness:
    agent: str
    ready: bool
    reason: str
    last_new: str | None
    observed_days: int
    would_deny: int
    # every destination of the observation period the policy would block once enforcing
    # (periodic ones last seen before the window included)
    would_block: tuple[DeniedDestination, ...] = ()


@dataclass(frozen=True, slots=True)
class Narrowing:
    """A wildcard allow entry the agent used for only a few hosts in its observation period."""

    agent: str
    entry: str
    hosts: tuple[str, ...]  # the entries that replace it (host, or host:port)
    dropped: tuple[str, ...]  # hosts it reached that carry a risk flag: not kept


@dataclass(frozen=True, slots=True)
class IncidentRef:
    """A control-plane incident (``corral serve``'s incidents.db) the review correlates."""

    id: str
    agent: str
    severity: str
    rule: str
    first_seen: float  # epoch seconds
    last_seen: float


@dataclass(frozen=True, slots=True)
class Signal:
    """One thing an agent did in the window that a reviewer should see with the rest."""

    kind: str  # destination | denied | anomaly | denial-spike | falco
    weight: int  # 0: context only
    text: str


@dataclass(frozen=True, slots=True)
class AgentStory:
    """Every signal of one agent in the window, joined and ranked."""

    agent: str
    score: int
    bytes_up: int
    signals: tuple[Signal, ...]


@dataclass(frozen=True, slots=True)
class Charts:
    days: tuple[str, ...] = ()
    bytes_up: dict[str, tuple[int, ...]] = field(default_factory=dict)  # top agents (+ others)
    new_destinations: tuple[int, ...] = ()
    deny: tuple[int, ...] = ()
    would_deny: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Report:
    generated: str
    since: str
    policy: str
    new_destinations: tuple[NewDestination, ...]
    denied: tuple[DeniedDestination, ...]
    activity: tuple[AgentActivity, ...]
    unused: tuple[UnusedEntry, ...]
    anomalies: tuple[Anomaly, ...]
    falco: tuple[FalcoNoise, ...]
    readiness: tuple[Readiness, ...]
    charts: Charts
    stories: tuple[AgentStory, ...] = ()  # riskiest agent first
    narrowings: tuple[Narrowing, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain data (what ``-o json`` prints): every field plus ``risky`` and ``ratio``."""
        out: dict[str, Any] = orjson.loads(orjson.dumps(self))  # 10x dataclasses.asdict
        for item, d in zip(self.new_destinations, out["new_destinations"], strict=True):
            d["risky"] = item.risky
        for anomaly, d in zip(self.anomalies, out["anomalies"], strict=True):
            d["ratio"] = round(anomaly.ratio, 1) if anomaly.median else None
        return out

    def counts(self) -> dict[str, int]:
        return {
            "new_destinations": len(self.new_destinations),
            "risky_new_destinations": sum(d.risky for d in self.new_destinations),
            "unused_entries": len(self.unused),
            "anomalies": len(self.anomalies),
            "noisy_falco_rules": len(self.falco),
            "ready_to_enforce": sum(r.ready for r in self.readiness),
            "agents_with_signals": len(self.stories),
        }
