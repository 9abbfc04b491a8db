"""Prometheus metrics of one gateway process, on an explicit registry (no global state).

Written by the metrics step at the end of each request/tunnel and by the resolver and reloader;
read by the admin port's ``/metrics``. Per-request counts go into plain dicts and are pushed into
the prometheus-client counters by ``flush`` (before each scrape and every second), so the hot
path takes no lock and parses no labels. With ``--workers N`` the values live in
prometheus-client's multiprocess files and the supervisor aggregates them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_DNS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "corral_gateway_requests", "Requests and tunnels by agent, decision and reason",
            ["agent", "decision", "reason"], registry=registry)
        self.bytes_up = Counter("corral_gateway_bytes_up", "Bytes sent upstream by agents",
                                ["agent"], registry=registry)
        self.bytes_down = Counter("corral_gateway_bytes_down", "Bytes returned to agents",
                                  ["agent"], registry=registry)
        self.tunnels = Gauge("corral_gateway_open_tunnels", "CONNECT tunnels open now",
                             ["agent"], registry=registry, multiprocess_mode="livesum")
        self.dns_seconds = Histogram("corral_gateway_dns_seconds", "DNS lookup latency",
                                     buckets=_DNS_BUCKETS, registry=registry)
        self.policy = Gauge("corral_gateway_policy_info", "Policy version loaded (value 1)",
                            ["version"], registry=registry, multiprocess_mode="liveall")
        self.reloads = Counter("corral_gateway_reloads", "Policy reload attempts by result",
                               ["result"], registry=registry)
        self.log_dropped = Counter("corral_gateway_log_dropped_lines",
                                   "Access lines dropped because the log reader fell behind",
                                   registry=registry)
        self._dropped = 0
        self._req: dict[tuple[str, str, str], int] = {}
        self._up: dict[str, int] = {}
        self._down: dict[str, int] = {}
        self._tun: dict[str, int] = {}
        self._version: str | None = None

    def request(self, agent: str, decision: str, reason: str, up: int, down: int) -> None:
        """Count one ended flow; plain dict adds, pushed to the counters by ``flush``."""
        key = (agent, decision, reason)
        self._req[key] = self._req.get(key, 0) + 1
        self._up[agent] = self._up.get(agent, 0) + up
        self._down[agent] = self._down.get(agent, 0) + down

    def flush(self) -> None:
        """Move the pending counts into prometheus-client (before a scrape, and on a timer)."""
        req, self._req = self._req, {}
        up, self._up = self._up, {}
        down, self._down = self._down, {}
        for (agent, decision, reason), n in req.items():
            self.requests.labels(agent, decision, reason).inc(n)
        for agent, n in up.items():
            if n:
                self.bytes_up.labels(agent).inc(n)
        for agent, n in down.items():
            if n:
                self.bytes_down.labels(agent).inc(n)
        tunnels, self._tun = self._tun, {}
        for agent, n in tunnels.items():
            if n:
                self.tunnels.labels(agent).inc(n)

    def tunnel(self, agent: str, delta: int) -> None:
        self._tun[agent] = self._tun.get(agent, 0) + delta

    def dns(self, seconds: float) -> None:
        self.dns_seconds.observe(seconds)

    def policy_loaded(self, version: str) -> None:
        if self._version is not None:
            self.policy.remove(self._version)
        self._version = version
        self.policy.labels(version).set(1)

    def reload(self, ok: bool) -> None:
        self.reloads.labels("ok" if ok else "error").inc()

    def log_dropped_to(self, total: int) -> None:
        """Bring the dropped-lines counter up to the log writer's running total."""
        if total > self._dropped:
            self.log_dropped.inc(total - self._dropped)
            self._dropped = total
