"""The processor chain: small steps over one ``Event``, in the order of ``STEPS`` in app.py.

Each step is ``step(event, outbox) -> bool``: True hands the event on, False stops the chain
(the event was fully handled). Steps write what must leave the process (incident changes, sink
deliveries, quarantine triggers) into the ``Outbox``, which the app drains in batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from corral.control.events import Event
from corral.control.incidents import Incident


@dataclass
class Outbox:
    """What the steps produced since the last drain. Bounded by the app (backpressure)."""

    dirty: dict[str, Incident] = field(default_factory=dict)  # incidents to write
    deliveries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sink -> items
    triggers: list[Incident] = field(default_factory=list)  # incidents that cross the threshold
    merged: list[Incident] = field(default_factory=list)  # folded into another, or evicted: over
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (agent, source, rule)
    pending: int = 0  # deliveries waiting

    def deliver(self, sink: str, item: dict[str, Any]) -> None:
        self.deliveries.setdefault(sink, []).append(item)
        self.pending += 1

    def count(self, ev: Event) -> None:
        key = (ev.agent or "", ev.source, ev.rule)
        self.counts[key] = self.counts.get(key, 0) + 1

    def take(self) -> Outbox:
        """Hand over the contents and start empty (the drain owns the returned box)."""
        box = Outbox(dirty=self.dirty, deliveries=self.deliveries, triggers=self.triggers,
                     counts=self.counts, pending=self.pending)
        self.dirty, self.deliveries, self.triggers, self.counts = {}, {}, [], {}
        self.pending = 0
        return box


class Step(Protocol):
    def __call__(self, ev: Event, out: Outbox) -> bool: ...
