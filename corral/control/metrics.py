"""Prometheus metrics of the control plane, on a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter("corral_control_events_total", "Events accepted, by source",
                              ["source"], registry=r)
        self.rejected = Counter("corral_control_rejected_total",
                                "Items or requests refused (4xx/503), by reason", ["reason"],
                                registry=r)
        self.incidents = Counter("corral_control_incidents_opened_total",
                                 "Incidents opened, by severity", ["severity"], registry=r)
        self.open_incidents = Gauge("corral_control_open_incidents", "Incidents open now",
                                    registry=r)
        self.queued = Counter("corral_control_sink_queued_total", "Items put on a sink's queue",
                              ["sink"], registry=r)
        self.delivered = Counter("corral_control_sink_delivered_total",
                                 "Items a sink acknowledged", ["sink"], registry=r)
        self.failures = Counter("corral_control_sink_failures_total",
                                "Failed delivery attempts", ["sink"], registry=r)
        self.dead = Counter("corral_control_sink_dead_total", "Items a sink refused for good",
                            ["sink"], registry=r)
        self.dropped = Counter("corral_control_sink_dropped_total",
                               "Items dropped because a sink queue hit max_queue", ["sink"],
                               registry=r)
        self.depth = Gauge("corral_control_sink_queue_depth", "Items waiting on disk", ["sink"],
                           registry=r)
        self.actions = Counter("corral_control_response_actions_total",
                               "Quarantine/release steps, by action and outcome",
                               ["action", "ok"], registry=r)
        self.ingest = Histogram("corral_control_ingest_seconds",
                                "Time to handle one ingest request", buckets=_LATENCY_BUCKETS,
                                registry=r)
        self.aggregate_errors = Counter("corral_control_aggregate_errors_total",
                                        "Behaviour-store batches lost (worker down)",
                                        registry=r)
        self.evicted = Counter("corral_control_incidents_evicted_total",
                               "Incidents closed early because max_open incidents were open",
                               registry=r)
        self.worker_restarts = Counter("corral_control_worker_restarts_total",
                                       "Worker processes (behaviour, sinks) that died and were "
                                       "started again", ["worker"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
