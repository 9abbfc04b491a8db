"""Dedup step: an event identical to one seen for the same subject within ``window`` seconds is
marked ``duplicate`` (still counted in its incident, not kept as a sample, never re-notified).

Identity is the output line without its leading timestamp; for a gateway line it is the
agent, destination and reason.
The table is bounded: expired entries are pruned when it grows past ``max_keys``.
"""

from __future__ import annotations

import re

from corral.control.events import SOURCE_GATEWAY, Event
from corral.control.processors import Outbox

# "12:01:58.123456789: ", "2026-11-26T12:01:58.123456789+0000: "
_LEADING_TIME = re.compile(r"^\d[\dT:.+\-Z]*: ")


class Dedup:
    def __init__(self, window: float, max_keys: int = 50_000) -> None:
        self._window = window
        self._max = max_keys
        self._seen: dict[tuple[str, str, str], float] = {}

    def __call__(self, ev: Event, out: Outbox) -> bool:
        key = (ev.subject, ev.rule, identity(ev))
        last = self._seen.get(key)
        if last is not None and ev.received - last <= self._window:
            ev.duplicate = True
        else:
            self._seen[key] = ev.received
            if len(self._seen) > self._max:
                self._prune(ev.received)
        return True

    def _prune(self, now: float) -> None:
        self._seen = {k: t for k, t in self._seen.items() if now - t <= self._window}
        if len(self._seen) > self._max:  # all recent: keep the newest half
            keep = sorted(self._seen.items(), key=lambda kv: kv[1])[len(self._seen) // 2:]
            self._seen = dict(keep)


def identity(ev: Event) -> str:
    """What makes two events the same: the alert's output line without Falco's leading
    timestamp (it names the process, file, pod...); gateway lines: agent, destination, reason."""
    if ev.source == SOURCE_GATEWAY:
        return ev.output
    return _LEADING_TIME.sub("", ev.output, count=1)
