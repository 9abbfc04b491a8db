"""Last steps: count the flow in Prometheus and write its one canonical access line.

A CONNECT that turned out to carry plain HTTP (``Flow.carrier``) is neither counted nor logged:
each request inside it is, as plain HTTP."""

from __future__ import annotations

import time

from corral.gateway.flow import Flow
from corral.gateway.log import AccessLog, TimeText
from corral.gateway.metrics import GatewayMetrics
from corral.gateway.ratelimit import Clock


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

    def done(self, flow: Flow) -> None:
        if flow.carrier:
            return  # each request it carried has its own line
        duration = round((time.perf_counter() - flow.started) * 1000.0, 3)
        self._log.write(flow.record(self._time(flow.wall), duration))
