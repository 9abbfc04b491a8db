"""The control plane wired together: ingest -> steps -> outbox -> store, sinks, response.

``ControlPlane`` owns the processor chain (``STEPS`` order: enrich, dedup, group, respond, route),
the stores, one disk queue + deliverer per sink, and the responder. Ingest calls are synchronous
and cheap (parse, run the steps, append to the outbox); the accepted records go to the ingest
journal once per event-loop pass before the requests are answered (journal.py), and a ticker
drains the outbox every ``flush_interval`` in one transaction per store, then empties the
journal, so memory stays bounded and writes are batched.
When the outbox is over ``max_pending`` the server answers 503 instead of growing a list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from corral.control import journal
from corral.control.behaviour import BehaviourFeed, one_line
from corral.control.events import BadEvent, Event
from corral.control.incidents import IdMaker, Incident
from corral.control.ingest.body import objects
from corral.control.ingest.falco import parse_falco
from corral.control.ingest.gateway import check_access, parse_access
from corral.control.ingest.tail import Tailer
from corral.control.metrics import Metrics
from corral.control.processors import Outbox, Step
from corral.control.processors.dedup import Dedup
from corral.control.processors.enrich import Enrich
from corral.control.processors.group import Group
from corral.control.processors.respond import Respond
from corral.control.processors.route import Route
from corral.control.response import KubeClient, KubeConfig, Responder, ResponseSettings
from corral.control.sinks.base import Sink
from corral.control.sinks.build import build_sink
from corral.control.sinks.deliver import Deliverer
from corral.control.sinks.queue import DiskQueue
from corral.control.sinks.worker import SinkProcess, queue_path
from corral.control.store import IncidentStore
from corral.model.control import NOTICE_CLOSED, NOTICE_OPENED
from corral.model.policy import Policy
from corral.model.records import requests_of

log = logging.getLogger("corral.control")
MAX_BEHAVIOUR_BACKLOG = 16 << 20  # bytes buffered or queued for the behaviour worker: 503s


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    flush_interval: float = 0.1
    sweep_interval: float = 1.0
    max_pending: int = 50_000  # outbox items before ingest answers 503
    max_store_bytes: int = 512 << 20  # incidents.db: oldest closed incidents pruned beyond it
    known_rules: frozenset[str] = frozenset()  # non-empty: other Falco rules are refused
    aggregates: bool = True  # feed the behaviour store (corral.store) under state_dir
    sink_process: bool = False  # deliver from a child process (serve) instead of this loop
    response: ResponseSettings = field(default_factory=ResponseSettings)
    kube: KubeConfig | None = None


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, index: int, exc: BadEvent) -> None:
        if len(self.rejected) < 100:
            self.rejected.append({"item": index, "reason": exc.reason, "error": str(exc)})


class ControlPlane:
    def __init__(self, policy: Policy, settings: Settings, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 sinks: Mapping[str, Sink] | None = None) -> None:
        self.policy, self.settings = policy, settings
        self.clock, self._sleep = clock, sleep
        self.metrics = Metrics()
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = IncidentStore(settings.state_dir / "incidents.db")
        spec = policy.spec
        self.selectors = {a.name: dict(a.selector) for a in spec.agents}
        self.behaviour = (BehaviourFeed(settings.state_dir / "behaviour.db", self.selectors,
                                        self._behaviour_error)
                          if settings.aggregates else None)
        resp = spec.response
        self.out = Outbox()
        self._quarantined: set[str] = set(self.store.quarantined())
        self.group = Group(resp.incidents, IdMaker(), self.store.open_incidents())
        self.route = Route(resp.sinks)
        self.steps: list[Step] = [
            Enrich(spec.namespace, self.selectors),
            Dedup(resp.incidents.dedup_s),
            self.group,
            Respond(resp.quarantine, self._quarantined),
            self.route,
        ]
        self._sink_override = dict(sinks or {})
        self.queues: dict[str, DiskQueue] = {}  # this process appends to them
        self.deliverers: dict[str, Deliverer] = {}  # in-process delivery (tests, --sink-inline)
        self.sink_process: SinkProcess | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.responder: Responder | None = None
        self._last_sweep = clock()
        self._seen: dict[tuple[str, str], int] = {}  # deliverer stats already exported
        self.tailers: list[Tailer] = []
        self._event_counters: dict[str, Any] = {}  # bound metric children, per source
        self._worker_behind = False  # the behaviour worker's pipe backlog is over the bound
        self._commit_waiter: asyncio.Future[bool] | None = None  # the group commit being formed
        self._store_full = False  # incidents.db over max_store_bytes with nothing to prune
        self.journal = journal.Journal(settings.state_dir / "ingest.journal")
        self._journal: list[bytes] = []  # accepted records not yet appended (next commit)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """Open sinks and queues; with ``background`` start the ticker and the deliverers."""
        self._session = aiohttp.ClientSession()
        if self.behaviour is not None:
            await self.behaviour.start()
        (self.settings.state_dir / "sinks").mkdir(exist_ok=True)
        specs = self.policy.spec.response.sinks
        for spec in specs:
            queue = self.queues[spec.name] = DiskQueue(
                queue_path(self.settings.state_dir, spec.name), spec.max_queue)
            if not self.settings.sink_process:
                sink = self._sink_override.get(spec.name) or build_sink(spec, self._session)
                self.deliverers[spec.name] = Deliverer(
                    sink, queue, batch=spec.batch, backoff=spec.backoff_s,
                    backoff_max=spec.backoff_max_s, sleep=self._sleep, clock=self.clock)
        if self.settings.sink_process and specs:
            self.sink_process = SinkProcess(self.settings.state_dir, specs, self._sinks_exited)
            await self.sink_process.start()
        kube = KubeClient(self.settings.kube, self._session) if self.settings.kube else None
        self.responder = Responder(self.settings.response, self.store, self._session, kube,
                                   clock=self.clock, sleep=self._sleep)
        self.responder.quarantined = self._quarantined
        self.replay()
        if background and (self._quarantined or self.settings.response.overlay_file):
            self.spawn("quarantine-reapply", self.responder.reapply())
        if background:
            self.spawn("ticker", self._ticker())
            for name, d in self.deliverers.items():
                self.spawn(f"deliver-{name}", d.run())
            for t in self.tailers:
                self.spawn(f"tail-{t.path.name}", t.run())

    async def aclose(self) -> None:
        """Drain what is in memory to disk, stop tasks, close sinks and stores."""
        self.flush()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for t in self.tailers:
            self.store.set_state(f"tail:{t.path.resolve()}", list(t.position))
            t.close()
        for d in self.deliverers.values():
            await d.sink.aclose()
        if self.sink_process is not None:
            await self.sink_process.aclose()
        for q in self.queues.values():
            q.close()
        if self._session is not None:
            await self._session.close()
        if self.behaviour is not None:
            await self.behaviour.aclose()
        self.store.close()
        self.journal.close()

    def tail(self, path: Path, interval: float = 0.25) -> Tailer:
        """Follow a gateway log file, resuming where the last run stopped."""
        key = f"tail:{path.resolve()}"
        saved = self.store.get_state(key)
        tailer = Tailer(path, self.ingest_gateway_line, interval=interval, sleep=self._sleep,
                        start=(saved[0], saved[1]) if saved else None)
        self.tailers.append(tailer)
        return tailer

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """The one way tasks start: named, referenced until done, failures logged."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # -- ingest -----------------------------------------------------------------------------

    def overloaded(self) -> bool:
        """Answer 503 (Retry-After) instead of growing: the outbox, the behaviour worker's
        backlog, or the store is at its bound."""
        b = self.behaviour
        pending = self.out.pending + (b.pending if b is not None else 0)
        behind = self._worker_behind or (b is not None and b.pending_bytes > MAX_BEHAVIOUR_BACKLOG)
        return pending >= self.settings.max_pending or behind or self._store_full

    def ingest_falco(self, body: bytes) -> IngestResult:
        result = IngestResult()
        known = self.settings.known_rules
        for i, obj in objects(body):
            try:
                if isinstance(obj, BadEvent):
                    raise obj
                ev = parse_falco(obj, known)
            except BadEvent as exc:
                self.metrics.rejected.labels(exc.reason).inc()
                result.reject(i, exc)
                continue
            line = one_line(obj, body if body[:1] == b"{" else None)  # a one-line body is
            if self.behaviour is not None:                               # the record itself
                self.behaviour.add_falco(line)
            self._journal.append(journal.FALCO + line + b"\n")
            self.process(ev)
            result.accepted += 1
        return result

    def ingest_gateway(self, body: bytes) -> IngestResult:
        result = IngestResult()
        for i, obj in objects(body):
            try:
                if isinstance(obj, BadEvent):
                    raise obj
                self._access(obj)
            except BadEvent as exc:
                self.metrics.rejected.labels(exc.reason).inc()
                result.reject(i, exc)
                continue
            result.accepted += 1
        return result

    def ingest_gateway_line(self, line: bytes) -> None:
        """One line from a tailed log file; a bad line is counted and skipped."""
        self.ingest_gateway(line)

    def _access(self, obj: dict[str, Any]) -> None:
        check_access(obj)
        ev = parse_access(obj, self.policy.spec.response.incidents.gateway_severity)
        line = orjson.dumps(obj)
        if self.behaviour is not None:
            self.behaviour.add_access(line)
        if ev is None:
            if requests_of(obj):  # not a tunnel's progress or close line: counted when it opened
                self.metrics.events.labels("gateway_allow").inc()
            return
        self._journal.append(journal.ACCESS + line + b"\n")
        self.process(ev)

    def process(self, ev: Event) -> None:
        """Run the steps over one event."""
        ev.received = self.clock()
        counter = self._event_counters.get(ev.source)
        if counter is None:
            counter = self._event_counters[ev.source] = self.metrics.events.labels(ev.source)
        counter.inc()
        for step in self.steps:
            if not step(ev, self.out):
                break
        if ev.change == NOTICE_OPENED:
            self.metrics.incidents.labels(ev.severity).inc()

    # -- drain ------------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await self._sleep(self.settings.flush_interval)
            try:
                self.tick()
            except Exception:  # a failing drain must not stop the control plane
                log.exception("drain failed; will retry")

    def tick(self) -> None:
        """Sweep quiet incidents (every sweep_interval) and flush."""
        now = self.clock()
        swept = now - self._last_sweep >= self.settings.sweep_interval
        if swept:
            self._last_sweep = now
            for inc in self.group.sweep(now):
                self.out.dirty[inc.id] = inc
                self.route.notice(inc, NOTICE_CLOSED, now, self.out)
        self.flush()
        if swept:  # after the flush: what the sweep closed is closed in the store too
            self._store_full = not self.store.prune(self.settings.max_store_bytes)
        self._restart_dead_workers()
        for t in self.tailers:  # after the flush: the lines up to here are on disk
            self.store.set_state(f"tail:{t.path.resolve()}", list(t.position))

    def _restart_dead_workers(self) -> None:
        """A worker that died is started again (once per death) and counted."""
        if self.behaviour is not None and self.behaviour.dead():
            self.metrics.worker_restarts.labels("behaviour").inc()
            self.spawn("behaviour-restart", self.behaviour.restart_if_dead())
        if self.sink_process is not None and self.sink_process.dead():
            self.metrics.worker_restarts.labels("sinks").inc()
            self.spawn("sinks-restart", self.sink_process.start())

    def flush(self) -> None:
        """Write the outbox: sink queues, incidents and counts, then empty the journal (all of
        it is in the store now); behaviour aggregates; triggered responses."""
        box = self.out.take()
        self._put_all(box.deliveries)
        if box.dirty or box.counts:
            self.store.write(box.dirty.values(), box.counts, self.clock())
        self._journal.clear()  # covered by this write, whether or not commit() ran yet
        self.journal.reset()
        if self.behaviour is not None:
            self.behaviour.flush()
            self._worker_behind = self.behaviour.backlog() > MAX_BEHAVIOUR_BACKLOG
        for inc in box.triggers:
            if inc.agent in self._quarantined:  # another incident got there first
                continue
            self._quarantined.add(inc.agent or "")  # before the task runs: no second trigger
            self.spawn(f"quarantine-{inc.agent}", self._quarantine(inc))
        self._observe()

    def commit(self) -> None:
        """Make what was accepted since the last commit durable: one append to the journal
        (survives a kill of this process once this returns; see journal.py)."""
        if self._journal:
            records, self._journal = self._journal, []
            self.journal.append(records)

    def replay(self) -> int:
        """At start: run the records a killed process acknowledged but never drained through
        the chain again, and drain them. Returns how many."""
        n = 0
        for kind, line in self.journal.records():
            (self.ingest_falco if kind == journal.FALCO else self.ingest_gateway)(line)
            n += 1
        if n:
            log.warning("replayed %d acknowledged records from the ingest journal", n)
        self.flush()
        return n

    def committed(self) -> asyncio.Future[bool]:
        """A future that is True once everything ingested up to now is committed (False when
        the commit failed). Group commit: every request of one event-loop pass shares it."""
        fut = self._commit_waiter
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = self._commit_waiter = loop.create_future()
            loop.call_soon(self._group_commit)
        return fut

    def _group_commit(self) -> None:
        fut, self._commit_waiter = self._commit_waiter, None
        try:
            self.commit()
        except OSError:  # the journal could not be written: nothing is acknowledged, retry
            log.exception("journal append failed; answering 503")
            ok = False
        else:
            ok = True
        if fut is not None and not fut.done():
            fut.set_result(ok)

    def _put_all(self, deliveries: dict[str, list[dict[str, Any]]]) -> None:
        for name, items in deliveries.items():
            self.queues[name].put(items)
            self.metrics.queued.labels(name).inc(len(items))
            if name in self.deliverers:
                self.deliverers[name].notify()
        if deliveries and self.sink_process is not None:
            self.sink_process.notify()

    def _behaviour_error(self, message: str) -> None:
        self.metrics.aggregate_errors.inc()
        log.error("%s", message)

    async def settle(self) -> None:
        """Wait until the behaviour store has every record handed over so far."""
        self.flush()
        if self.behaviour is not None:
            await self.behaviour.settle()

    def _observe(self) -> None:
        m = self.metrics
        m.open_incidents.set(len(self.group.open))
        seen = self._seen.setdefault(("", "evicted"), 0)
        if self.group.evicted > seen:
            m.evicted.inc(self.group.evicted - seen)
            self._seen[("", "evicted")] = self.group.evicted
        for name, q in self.queues.items():
            if self.sink_process is not None:
                q.refresh()
            m.depth.labels(name).set(q.depth)
            st = self._sink_stats(name)
            for counter, value, attr in ((m.delivered, st["delivered"], "delivered"),
                                         (m.failures, st["failures"], "failures"),
                                         (m.dead, st["dead"], "dead"),
                                         (m.dropped, q.dropped, "dropped")):
                seen = self._seen.setdefault((name, attr), 0)
                if value > seen:
                    counter.labels(name).inc(value - seen)
                    self._seen[(name, attr)] = value

    # -- response ---------------------------------------------------------------------------

    async def _quarantine(self, inc: Incident) -> None:
        assert self.responder is not None and inc.agent is not None
        pods = ((inc.namespace, inc.pod),) if inc.pod and inc.namespace else ()
        log.warning("quarantine agent=%s incident=%s severity=%s", inc.agent, inc.id,
                    inc.severity)
        results = await self.responder.quarantine(inc.agent, inc.id, pods)
        self._count_actions(results)

    async def quarantine(self, agent: str) -> list[dict[str, Any]]:
        """Manual quarantine (API/CLI)."""
        assert self.responder is not None
        results = await self.responder.quarantine(agent)
        self._count_actions(results)
        return results

    async def release(self, agent: str) -> list[dict[str, Any]]:
        assert self.responder is not None
        results = await self.responder.release(agent)
        self._count_actions(results)
        for inc in self.group.open.values():  # a new incident may quarantine it again
            if inc.agent == agent:
                inc.quarantined = False
        return results

    def _count_actions(self, results: list[dict[str, Any]]) -> None:
        for r in results:
            self.metrics.actions.labels(r["action"], str(r["ok"]).lower()).inc()

    # -- read side --------------------------------------------------------------------------

    def agents(self) -> list[dict[str, Any]]:
        counts = self.store.event_counts()
        quarantined = self.store.quarantined()
        ports = self.policy.spec.listener_ports()
        open_by_agent: dict[str, int] = {}
        for inc in self.group.open.values():
            open_by_agent[inc.agent or ""] = open_by_agent.get(inc.agent or "", 0) + 1
        return [{
            "name": a.name, "selector": dict(a.selector), "port": ports[a.name],
            "mode": a.egress.mode, "events": counts.get(a.name, {}),
            "open_incidents": open_by_agent.get(a.name, 0),
            "quarantined": a.name in quarantined,
            "quarantine": quarantined.get(a.name),
        } for a in self.policy.spec.agents]

    def sinks(self) -> list[dict[str, Any]]:
        out = []
        for name, q in self.queues.items():
            depth = q.refresh() if self.sink_process is not None else q.depth
            out.append({"name": name, "queued": depth, "dropped": q.dropped,
                        **self._sink_stats(name)})
        return out

    def _sink_stats(self, name: str) -> dict[str, Any]:
        d = self.deliverers.get(name)
        if d is not None:
            return {"delivered": d.stats.delivered, "failures": d.stats.failures,
                    "dead": d.stats.dead, "retry_in_s": d.delay}
        reported = self.sink_process.stats.get(name) if self.sink_process else None
        return reported or {"delivered": 0, "failures": 0, "dead": 0, "retry_in_s": 0.0}

    def _sinks_exited(self, code: int) -> None:
        log.error("sink worker exited with %d; restarting it", code)

