"""Last steps: count the flow in Prometheus and write its canonical access lines.

A plain request or a refusal is one line (event ``request``) when it ends. A tunnel is logged
when it opens (its decision), by ``progress`` lines while it stays open (``Gateway`` calls them
every ``spec.gateway.log_progress_s``) and when it closes; they share a flow id and each carries
the bytes since the previous one. A CONNECT that turned out to carry plain HTTP
(``Flow.carrier``) is neither counted nor logged: each request inside it is, as plain HTTP."""

from __future__ import annotations

import itertools
import os
import time

from corral.gateway.flow import Flow
from corral.gateway.log import AccessLog, TimeText
from corral.gateway.metrics import GatewayMetrics
from corral.gateway.ratelimit import Clock
from corral.model import records as R


class Metrics:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def done(self, flow: Flow) -> None:
        if flow.carrier:
            return  # each request it carried was counted
        self._metrics.request(flow.agent, flow.decision, flow.reason, flow.bytes_up,
                              flow.bytes_down)


class Log:
    def __init__(self, log: AccessLog, wall: Clock) -> None:
        self._log = log
        self._wall = wall
        self._time = TimeText()
        # flow ids: unique per process (workers, replicas, restarts), then a counter
        self._prefix = os.urandom(6).hex() + "-"
        self._ids = itertools.count(1)

    def opened(self, flow: Flow) -> None:
        flow.line_at = self._wall()
        self._write(flow, R.EVENT_OPEN, flow.wall)

    def progress(self, flow: Flow) -> None:
        flow.line_at = self._wall()
        self._write(flow, R.EVENT_PROGRESS, flow.line_at)

    def done(self, flow: Flow) -> None:
        if flow.carrier:
            return  # each request it carried has its own line
        if flow.opened:
            self._write(flow, R.EVENT_CLOSE, self._wall())
        else:
            self._write(flow, R.EVENT_REQUEST, flow.wall)

    def _write(self, flow: Flow, event: str, at: float) -> None:
        if not flow.id:
            flow.id = f"{self._prefix}{next(self._ids):x}"
        duration = round((time.perf_counter() - flow.started) * 1000.0, 3)
        self._log.write(flow.record(self._time(at), duration, event))
