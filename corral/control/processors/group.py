"""Group step: fold events into incidents, and join a Falco alert with a gateway denial.

An incident is (subject, rule) within ``window_s`` of its last event. A Falco alert and a gateway
denial of the same agent (the gateway knows the agent, not the pod) within ``correlate_s`` become
one incident, one severity level higher than either, tagged ``correlated``; the gateway incident
is folded into the Falco one (status ``merged``) and later denials of that agent join it too.
Windows run on the ingest clock (``Event.received``), so tests drive them without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from corral.control.events import SOURCE_FALCO, SOURCE_GATEWAY, Event
from corral.control.incidents import MAX_SAMPLES, Incident
from corral.control.processors import Outbox
from corral.model.control import NOTICE_ESCALATED, NOTICE_OPENED, Incidents, raise_severity
from corral.model.control import severity_rank as rank


class Group:
    def __init__(self, settings: Incidents, new_id: Callable[[float], str],
                 open_incidents: Iterable[Incident] = ()) -> None:
        self._s = settings
        self._new_id = new_id
        self.open: dict[str, Incident] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._falco: dict[str, str] = {}  # agent -> Falco incident updated last
        self._gateway: dict[str, str] = {}  # agent -> its gateway-denial incident
        self._joined: dict[str, str] = {}  # agent -> correlated incident gateway denials join
        self.evicted = 0  # incidents closed early at max_open
        for inc in open_incidents:
            self._index(inc)

    def __call__(self, ev: Event, out: Outbox) -> bool:
        now = ev.received
        inc = self._gateway_target(ev, now) if ev.source == SOURCE_GATEWAY else None
        if inc is None:
            inc = self._live(self._by_key.get((ev.subject, ev.rule)), now, self._s.window_s)
        if inc is None:
            self._evict(out)
            inc = self._create(ev, now)
            ev.change = NOTICE_OPENED
        else:  # least recently updated first: eviction takes the coldest
            self.open[inc.id] = self.open.pop(inc.id)
        if inc.add(ev, now) and ev.change is None:
            ev.change = NOTICE_ESCALATED
        if ev.source == SOURCE_FALCO and ev.agent:
            self._falco[ev.agent] = inc.id
            if self._join_gateway(inc, ev.agent, now, out) and ev.change is None:
                ev.change = NOTICE_ESCALATED
        ev.incident = inc.id
        out.dirty[inc.id] = inc
        return True

    def sweep(self, now: float) -> list[Incident]:
        """Close incidents quiet for longer than the window or open longer than max_age_s."""
        window, age = self._s.window_s, self._s.max_age_s
        quiet = [i for i in self.open.values()
                 if now - i.last_seen > window or now - i.first_seen > age]
        for inc in quiet:
            inc.status = "closed"
            self._forget(inc)
        return quiet

    def _evict(self, out: Outbox) -> None:
        """At ``max_open``, close the least recently updated incident (its sinks get
        ``closed``), so a flood of distinct subjects cannot grow memory."""
        while len(self.open) >= self._s.max_open:
            coldest = self.open[next(iter(self.open))]
            coldest.status = "closed"
            self._forget(coldest)
            out.dirty[coldest.id] = coldest
            out.merged.append(coldest)
            self.evicted += 1

    def _gateway_target(self, ev: Event, now: float) -> Incident | None:
        agent = ev.agent or ""
        joined = self._live(self._joined.get(agent), now, self._s.window_s)
        if joined is not None:
            return joined
        falco = self._live(self._falco.get(agent), now, self._s.correlate_s)
        if falco is not None:
            if _correlate(falco, ev.severity):
                ev.change = NOTICE_ESCALATED
            self._joined[agent] = falco.id
        return falco

    def _join_gateway(self, inc: Incident, agent: str, now: float, out: Outbox) -> bool:
        """Fold the agent's recent gateway incident into ``inc``; True when inc escalated."""
        gw = self._live(self._gateway.get(agent), now, self._s.correlate_s)
        if gw is None or gw is inc:
            return False
        inc.count += gw.count
        inc.sources |= gw.sources
        inc.tags |= gw.tags
        inc.rules |= gw.rules
        inc.samples.extend(gw.samples[: max(0, MAX_SAMPLES - len(inc.samples))])
        gw.status, gw.merged_into = "merged", inc.id
        self._forget(gw)
        self._joined[agent] = inc.id
        out.dirty[gw.id] = gw
        out.merged.append(gw)
        return _correlate(inc, gw.severity)

    def _create(self, ev: Event, now: float) -> Incident:
        inc = Incident(
            id=self._new_id(now), agent=ev.agent, subject=ev.subject, pod=ev.pod,
            namespace=ev.namespace, rule=ev.rule, severity=ev.severity, first_seen=now,
            last_seen=now, summary=ev.output[:500],
        )
        self._index(inc)
        if ev.source == SOURCE_GATEWAY and ev.agent:
            self._gateway[ev.agent] = inc.id
        return inc

    def _index(self, inc: Incident) -> None:
        self.open[inc.id] = inc
        self._by_key[(inc.subject, inc.rule)] = inc.id

    def _forget(self, inc: Incident) -> None:
        self.open.pop(inc.id, None)
        if self._by_key.get((inc.subject, inc.rule)) == inc.id:
            del self._by_key[(inc.subject, inc.rule)]
        for table in (self._falco, self._gateway, self._joined):
            if inc.agent is not None and table.get(inc.agent) == inc.id:
                del table[inc.agent]

    def _live(self, inc_id: str | None, now: float, within: float) -> Incident | None:
        inc = self.open.get(inc_id) if inc_id is not None else None
        if inc is None or now - inc.last_seen > within:
            return None
        return inc


def _correlate(inc: Incident, other_severity: str) -> bool:
    """Mark ``inc`` as joining a Falco alert and a gateway denial; True when it escalated."""
    if inc.correlated:
        return False
    inc.correlated = True
    inc.sources.update((SOURCE_FALCO, SOURCE_GATEWAY))
    inc.tags.add("correlated")
    top = inc.severity if rank(inc.severity) >= rank(other_severity) else other_severity
    inc.severity = raise_severity(top)
    return True
