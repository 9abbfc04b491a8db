"""Route step: which sinks hear about an event or an incident change.

Incident sinks get a notice when an incident opens, escalates or closes (also when it is
folded into a correlated one: status ``merged``, ``merged_into`` names it); event sinks
(``send: events``) get every enriched event. Each sink's route filters on severity (at least
``min_severity``) and tags (any of ``tags``, when set). Notices and events keep their identity
key, so a receiver can tell a redelivery from a new item.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Any

from corral.control.events import Event
from corral.control.incidents import Incident, Notice
from corral.control.processors import Outbox
from corral.model.control import NOTICE_CLOSED, Sink, severity_rank


@dataclass(frozen=True, slots=True)
class _Route:
    sink: str
    min_rank: int
    tags: frozenset[str]
    events: bool

    def wants(self, severity: str, tags: set[str] | tuple[str, ...]) -> bool:
        if severity_rank(severity) < self.min_rank:
            return False
        return not self.tags or not self.tags.isdisjoint(tags)


class Route:
    def __init__(self, sinks: tuple[Sink, ...]) -> None:
        self._routes = [
            _Route(s.name, severity_rank(s.route.min_severity), frozenset(s.route.tags),
                   s.send == "events")
            for s in sinks
        ]
        self._prefix = secrets.token_hex(4)  # event keys stay unique across restarts
        self._seq = itertools.count(1)
        self._events = [r for r in self._routes if r.events]
        self._notices = [r for r in self._routes if not r.events]

    def __call__(self, ev: Event, out: Outbox) -> bool:
        if self._events:
            tags = (*ev.tags, ev.source)
            item: dict[str, Any] | None = None
            for r in self._events:
                if r.wants(ev.severity, tags):
                    item = item or self._event_item(ev)
                    out.deliver(r.sink, item)
        inc = out.dirty.get(ev.incident or "")
        if ev.change is not None and inc is not None:
            self.notice(inc, ev.change, ev.received, out)
        while out.merged:  # a folded-in incident is over: receivers can resolve it
            self.notice(out.merged.pop(), NOTICE_CLOSED, ev.received, out)
        return True

    def notice(self, inc: Incident, kind: str, now: float, out: Outbox) -> None:
        """Send one notice about ``inc`` to every incident sink whose route wants it."""
        tags = inc.tags | inc.sources
        payload: dict[str, Any] | None = None
        for r in self._notices:
            if r.wants(inc.severity, tags):
                payload = payload or Notice(kind, inc.record(), now).payload()
                out.deliver(r.sink, payload)

    def _event_item(self, ev: Event) -> dict[str, Any]:
        item = ev.sample()
        item["key"] = f"evt-{self._prefix}-{next(self._seq)}"
        return item
