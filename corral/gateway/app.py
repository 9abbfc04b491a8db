"""Process wiring: one gateway process (listeners + admin + reload + overlay), or N workers.

``serve(options)`` runs one process: loads the policy snapshot, builds the steps, opens one
listener per agent and the admin port, then watches the policy file (SIGHUP, or a changed
target/mtime polled every ``poll_seconds`` so a Kubernetes ConfigMap symlink swap is seen) and
the quarantine overlay file; SIGTERM/SIGINT drain. ``run(options)`` picks one process or, with
``workers > 1``, the supervisor in ``workers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import uvloop
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from corral.gateway import quarantine, state
from corral.gateway.log import AccessLog
from corral.gateway.metrics import GatewayMetrics
from corral.gateway.ratelimit import Clock
from corral.gateway.resolver import ResolveError, Resolver
from corral.gateway.server import AdminServer, Gateway
from corral.gateway.sharedlimits import LimitPlan
from corral.gateway.steps import Context, build_pipeline
from corral.gateway.steps.selfguard import OwnAddresses
from corral.model.domains import looks_like_ip, parse_ip_literal
from corral.model.errors import PolicyError

log = logging.getLogger("corral.gateway")


@dataclass(frozen=True, slots=True)
class Options:
    policy_path: str
    listen: str = "127.0.0.1"
    admin_port: int | None = None  # None: policy.spec.gateway.admin_port; 0: any free port
    workers: int = 1
    log: str = "-"
    resolver: tuple[str, int] | None = None
    overlay: str | None = None
    drain_seconds: float = 10.0
    poll_seconds: float = 1.0
    reuse_port: bool = False
    admin_token: str | None = None  # required as a Bearer token to change quarantine
    control_plane: tuple[str, ...] = ()  # hosts (names or addresses) never dialled
    state: str | None = None  # writable file keeping admin API quarantine changes (quarantine.py)
    limit_share: int = 1  # replicas dividing each rate and quota (sharedlimits.LimitPlan)
    limits_dir: str | None = None  # set by the supervisor: counters its workers share


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def file_key(path: str) -> tuple[str, int, int, int] | None:
    """What identifies a file's current content cheaply: resolved target, inode, mtime, size."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return os.path.realpath(path), st.st_ino, st.st_mtime_ns, st.st_size


def read_overlay(path: str | None) -> frozenset[str]:
    return quarantine.read_set(path)


class Runtime:
    """Everything one gateway process runs; also the admin port's backend."""

    def __init__(self, opts: Options, snapshot: state.Snapshot, *,
                 registry: CollectorRegistry | None = None, clock: Clock = time.monotonic,
                 wall: Clock = time.time, resolver: Resolver | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.opts = opts
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.resolver = resolver or Resolver(opts.resolver, observe=self.metrics.dns)
        self.log = AccessLog(opts.log)
        self.own = OwnAddresses()
        plan = LimitPlan(opts.limit_share, opts.limits_dir)
        self.pipeline = build_pipeline(Context(self.resolver, self.metrics, self.log, clock, wall,
                                               self.own, plan))
        self.gateway = Gateway(snapshot, self.pipeline, listen=opts.listen,
                               reuse_port=opts.reuse_port, wall=wall)
        self.admin: AdminServer | None = None
        self.admin_port: int | None = None
        self.started = False
        self.stopping = asyncio.Event()
        self._keys = (file_key(opts.policy_path), file_key(opts.overlay or ""))
        self.qfiles = quarantine.QuarantineFiles(opts.overlay, opts.state)
        with contextlib.suppress(OSError, ValueError):  # load_initial already reported it
            self.qfiles.initial()
        self._tasks: list[asyncio.Task[Any]] = []
        self._say = say or (lambda text: print(text, file=sys.stderr, flush=True))

    @property
    def snapshot(self) -> state.Snapshot:
        return self.gateway.snapshot

    # -- lifecycle
    async def start(self, *, admin: bool = True) -> None:
        self.log.start()
        await self.gateway.start()
        self.metrics.policy_loaded(self.snapshot.version)
        if admin:
            port = self.opts.admin_port
            if port is None:
                port = self.snapshot.policy.spec.gateway.admin_port
            self.admin = AdminServer(self, self.opts.listen, port, self.opts.admin_token)
            self.admin_port = await self.admin.start()
        self._own_ports()
        await self._find_control_plane()
        self._spawn(self._watch(), "policy-watch")
        self._spawn(self._flush_metrics(), "metrics-flush")
        self.started = True
        for agent, port in sorted(self.gateway.bound().items(), key=lambda kv: kv[1]):
            self._say(f"agent {agent} -> {hostport(self.opts.listen, port)}")
        if self.admin_port is not None:
            self._say(f"admin -> {hostport(self.opts.listen, self.admin_port)}")

    def _own_ports(self) -> None:
        """The ports the self guard refuses on local addresses: listeners and admin port (the
        configured one too: a worker has none of its own, its supervisor serves it)."""
        ports = set(self.gateway.bound().values()) | set(self.snapshot.agent_by_port)
        ports |= {p for p in (self.admin_port, self.opts.admin_port,
                              self.snapshot.policy.spec.gateway.admin_port) if p}
        self.own.ports = frozenset(ports)

    async def _find_control_plane(self) -> None:
        names, addrs = set(), set()
        for host in self.opts.control_plane:
            ip = parse_ip_literal(host)
            if ip is not None and looks_like_ip(host):
                addrs.add(str(ip))
                continue
            names.add(host.lower().rstrip("."))
            try:
                addrs.update(str(a) for a in await self.resolver.resolve(host))
            except ResolveError as exc:
                log.error("gateway: control plane %s not resolved (%s); refused by name only",
                          host, exc)
        self.own.control_names, self.own.control = frozenset(names), frozenset(addrs)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.append(task)

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload("SIGHUP"),
                                                                   "reload"))
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)

    async def stop(self) -> int:
        if self.admin is not None:
            self.admin.close()
        cut = await self.gateway.drain(self.opts.drain_seconds)
        for task in self._tasks:
            task.cancel()
        self.metrics.flush()
        self.log.close()
        if cut:
            log.warning("gateway: drain ended with %d flows still open; they were cut", cut)
        return cut

    # -- reload
    async def reload(self, why: str) -> bool:
        """Load the policy file again; a bad file is reported and the old policy kept."""
        try:
            # parsed off the event loop: a large or hostile file must not stall the data path
            snap = await asyncio.to_thread(state.load_snapshot, self.opts.policy_path,
                                           self.snapshot.quarantined)
        except PolicyError as exc:
            for problem in exc.problems:
                log.error("gateway: reload (%s) refused: %s", why, problem)
            self.metrics.reload(False)
            return False
        except (OSError, UnicodeDecodeError) as exc:
            log.error("gateway: reload (%s) refused: cannot read policy: %s", why, exc)
            self.metrics.reload(False)
            return False
        except Exception as exc:
            log.error("gateway: reload (%s) refused: %s: %s", why, type(exc).__name__, exc)
            self.metrics.reload(False)
            return False
        await self.gateway.apply(snap)
        self._own_ports()
        self.metrics.policy_loaded(snap.version)
        self.metrics.reload(True)
        log.warning("gateway: policy %s loaded (%s)", snap.version, why)
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.opts.poll_seconds)
            try:
                await self._watch_once()
            except Exception as exc:
                log.error("gateway: policy watcher: %s: %s", type(exc).__name__, exc)

    async def _watch_once(self) -> None:
        policy_key = file_key(self.opts.policy_path)
        overlay_key = file_key(self.opts.overlay or "")
        if policy_key is not None and policy_key != self._keys[0]:
            self._keys = (policy_key, self._keys[1])
            await self.reload("file changed")
        if overlay_key != self._keys[1]:
            self._keys = (self._keys[0], overlay_key)
            self._load_overlay()

    def _load_overlay(self) -> None:
        try:
            agents = read_overlay(self.opts.overlay)
        except (OSError, ValueError) as exc:
            log.error("gateway: overlay %s ignored: %s", self.opts.overlay, exc)
            return
        self.apply_quarantine(agents)
        self.qfiles.overlay_changed(agents)

    def apply_quarantine(self, agents: frozenset[str]) -> None:
        """New requests of these agents are denied; their open connections are cut."""
        if agents == self.snapshot.quarantined:
            return
        added = agents - self.snapshot.quarantined
        self.gateway.snapshot = self.snapshot.with_quarantine(agents)
        cut = sum(self.gateway.cut(agent) for agent in sorted(added))
        log.warning("gateway: quarantined agents now %s (%d open connections cut)",
                    sorted(agents) or "none", cut)

    # -- admin backend
    def ready(self) -> bool:
        """Serving: listeners up, not draining, and the access log is not stuck."""
        return self.started and not self.gateway.draining and not self.log.stalled()

    def metrics_text(self) -> tuple[bytes, str]:
        self.metrics.flush()
        self.metrics.log_dropped_to(self.log.dropped)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.metrics.flush()
            self.metrics.log_dropped_to(self.log.dropped)

    def quarantined(self) -> list[str]:
        return sorted(self.snapshot.quarantined)

    def known_agents(self) -> list[str]:
        return [a.name for a in self.snapshot.policy.spec.agents]

    async def set_quarantine(self, agent: str, on: bool) -> bool:
        """Apply at once; True when the change was also saved (``quarantine.QuarantineFiles``)."""
        current = set(self.snapshot.quarantined)
        current = current | {agent} if on else current - {agent}
        self.apply_quarantine(frozenset(current))
        saved = self.qfiles.persist(frozenset(current))
        self._keys = (self._keys[0], file_key(self.opts.overlay or ""))
        return saved


def load_initial(opts: Options) -> state.Snapshot:
    """The policy and quarantine set at start; ``PolicyError``/``ValueError`` when unusable."""
    agents = quarantine.QuarantineFiles(opts.overlay, opts.state).initial()
    return state.load_snapshot(opts.policy_path, agents)


async def serve(opts: Options, snapshot: state.Snapshot | None = None,
                on_ready: Callable[[Runtime], None] | None = None) -> int:
    """Run one gateway process until SIGTERM/SIGINT; drain; exit code 0."""
    rt = Runtime(opts, snapshot or load_initial(opts))
    rt.install_signals()
    await rt.start()
    if on_ready is not None:
        on_ready(rt)
    await rt.stopping.wait()
    await rt.stop()
    return 0


def usable_cpus(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """CPUs this process may really use: its affinity, capped by a cgroup v2 CPU quota.

    ``--workers 0`` means one per core; in a pod limited to 1 CPU on a 16-core node that must
    be 1, not 16 (what ``os.cpu_count()`` would say).
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError):
        with open(cgroup_cpu_max, encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    return max(1, count)


def raise_fd_limit(want: int = 1 << 16) -> None:
    """10,000 tunnels need 20,000+ descriptors: lift the soft limit (and, as root, the hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
    target = want if hard == resource.RLIM_INFINITY else min(max(soft, want), hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(opts: Options) -> int:
    raise_fd_limit()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    if opts.workers > 1:
        from corral.gateway.workers import supervise  # noqa: PLC0415 (workers imports app)

        return supervise(opts)
    code: int = uvloop.run(serve(opts))
    return code
