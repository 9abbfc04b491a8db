"""Incidents: what grouped events become, and the notices sinks receive about them.

The group step (processors/group.py) creates and updates ``Incident`` values; the store persists
them; the route step turns their changes into ``Notice`` values for sinks. Plain data, no I/O.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from corral.control.events import Event
from corral.model.control import severity_rank

MAX_SAMPLES = 5
MAX_TAGS = 64  # tags and rules kept per incident (bounded whatever the events carry)


@dataclass(slots=True)
class Incident:
    id: str
    agent: str | None
    subject: str
    pod: str | None
    namespace: str | None
    rule: str
    severity: str
    first_seen: float
    last_seen: float
    count: int = 0
    sources: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)  # every rule folded in (correlation)
    status: str = "open"  # open | closed | merged
    correlated: bool = False
    merged_into: str | None = None
    quarantined: bool = False
    summary: str = ""
    samples: list[dict[str, Any]] = field(default_factory=list)
    samples_stored: int = 0  # how many of the samples the store has (it writes them apart)

    def add(self, ev: Event, now: float) -> bool:
        """Fold one event in; True when the severity rose."""
        self.count += 1
        self.last_seen = max(self.last_seen, now)
        self.sources.add(ev.source)
        if len(self.tags) < MAX_TAGS:
            self.tags.update(ev.tags)
        if len(self.rules) < MAX_TAGS:
            self.rules.add(ev.rule)
        if not ev.duplicate and len(self.samples) < MAX_SAMPLES:
            self.samples.append(ev.sample())
        if self.pod is None and ev.pod is not None:
            self.pod, self.namespace = ev.pod, ev.namespace
        if severity_rank(ev.severity) > severity_rank(self.severity):
            self.severity = ev.severity
            return True
        return False

    def record(self) -> dict[str, Any]:
        """The JSON view (API, store, sinks); field names as in corral.model.control."""
        return {**self.head(), "samples": self.samples}

    def head(self) -> dict[str, Any]:
        """``record()`` without the samples: what the store rewrites on every change (the
        samples, written once each, are most of an incident's bytes)."""
        return {
            "id": self.id, "agent": self.agent, "subject": self.subject, "pod": self.pod,
            "namespace": self.namespace, "rule": self.rule, "rules": sorted(self.rules),
            "severity": self.severity, "sources": sorted(self.sources), "tags": sorted(self.tags),
            "count": self.count, "first_seen": self.first_seen, "last_seen": self.last_seen,
            "status": self.status, "summary": self.summary, "correlated": self.correlated,
            "merged_into": self.merged_into, "quarantined": self.quarantined,
        }


@dataclass(frozen=True, slots=True)
class Notice:
    """One message about an incident for sinks: kind is opened | escalated | closed."""

    kind: str
    incident: dict[str, Any]
    time: float

    @property
    def key(self) -> str:
        """Stable identity of this notice (receivers and Elasticsearch ``_id`` dedup on it)."""
        inc = self.incident
        return f"{inc['id']}:{self.kind}:{inc['count']}:{inc['severity']}"

    def payload(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "time": self.time, "incident": self.incident}


class IdMaker:
    """Incident ids: sortable by creation, unique across restarts (random per-process prefix)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(3)
        self._seq = itertools.count(1)

    def __call__(self, now: float) -> str:
        return f"inc-{int(now):x}-{self._prefix}-{next(self._seq)}"
