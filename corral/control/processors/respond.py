"""Respond step: an incident that crosses the policy's quarantine threshold triggers once.

The threshold (``spec.response.quarantine``): severity at least ``min_severity``, at least
``min_events`` events, optionally only correlated incidents and only listed agents. The step only
decides; response.py acts (gateway deny-all, pod label) when the app drains the trigger.

A gateway line refused *because* the agent is quarantined is the quarantine's own echo, not new
evidence: it joins its incident but never triggers. Otherwise an echo tailed after a release
(the log is read a moment behind) quarantined the agent again through the same open incident.
"""

from __future__ import annotations

from collections.abc import Container

from corral.control.events import Event
from corral.control.incidents import Incident
from corral.control.processors import Outbox
from corral.decide import reasons
from corral.model.control import Quarantine, severity_rank


class Respond:
    def __init__(self, settings: Quarantine, quarantined: Container[str]) -> None:
        self._s = settings
        self._min = severity_rank(settings.min_severity)
        self._quarantined = quarantined  # live view of agents already cut off

    def __call__(self, ev: Event, out: Outbox) -> bool:
        inc = out.dirty.get(ev.incident or "")
        if (inc is not None and not inc.quarantined and not _echo(ev)
                and self.crosses(inc)):
            inc.quarantined = True
            out.triggers.append(inc)
        return True

    def crosses(self, inc: Incident) -> bool:
        s = self._s
        return (
            s.enabled and inc.agent is not None
            and inc.agent not in self._quarantined
            and (not s.agents or inc.agent in s.agents)
            and severity_rank(inc.severity) >= self._min
            and inc.count >= s.min_events
            and (inc.correlated or not s.correlated_only)
        )


def _echo(ev: Event) -> bool:
    """A refusal caused by the quarantine itself."""
    return ev.source == "gateway" and ev.fields.get("reason") == reasons.QUARANTINED
