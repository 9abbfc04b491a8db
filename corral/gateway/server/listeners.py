"""``Gateway``: one process's listeners (one per agent port), live connections, sweeper, drain.

The snapshot is swapped on reload; new flows read it, open ones keep theirs. The sweeper ticks
coarsely and enforces header and idle timeouts by comparing tick counts (no timer per
connection), and expires idle pooled upstream connections. ``admit`` caps client connections per
agent and per process (below what the descriptor limit can hold), keeping a reserve per agent.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections.abc import Callable

from corral.decide import reasons
from corral.gateway.server.client import ClientConnection, Wall
from corral.gateway.server.upstream import POOL_IDLE_S, UpstreamPool
from corral.gateway.state import Snapshot
from corral.gateway.steps import Pipeline

AGENT_RESERVE = 64  # connections every agent may open even when the process total is reached
FD_SPARE = 512  # descriptors kept for the admin port, DNS, logs and the reserves


def fd_capacity() -> int:
    """Client connections the descriptor limit can hold: two descriptors each (client and
    upstream), after ``FD_SPARE``."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(AGENT_RESERVE, (soft - FD_SPARE) // 2)


class Gateway:
    """Listeners and live connections of one process; ``snapshot`` is swapped on reload."""

    def __init__(self, snapshot: Snapshot, pipeline: Pipeline, *, listen: str = "127.0.0.1",
                 reuse_port: bool = False, wall: Wall = time.time) -> None:
        self.snapshot = snapshot
        self.pipeline = pipeline
        self.listen = listen
        self.reuse_port = reuse_port
        self.wall = wall
        self.servers: dict[int, asyncio.Server] = {}
        self.conns: set[ClientConnection] = set()
        self.per_port: dict[int, int] = {}  # admitted connections by listener port (agent)
        self.fd_cap = fd_capacity()
        self.tick = 0
        self.draining = False
        self.pool = UpstreamPool()
        lim = snapshot.limits
        self.tick_s = max(0.02, min(1.0, lim.header_timeout_s / 4, lim.idle_timeout_s / 4))
        self._sweeper: asyncio.Task[None] | None = None

    # -- listeners
    async def start(self) -> None:
        await self.sync_listeners()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="sweeper")

    async def sync_listeners(self) -> None:
        """Open a listener per agent port of the snapshot, close those no agent uses now."""
        loop = asyncio.get_running_loop()
        wanted = set(self.snapshot.agent_by_port)
        for port in sorted(set(self.servers) - wanted):
            self.servers.pop(port).close()
        for port in sorted(wanted - set(self.servers)):
            self.servers[port] = await loop.create_server(
                self._factory(port), host=self.listen, port=port,
                reuse_port=self.reuse_port or None, backlog=4096)

    def _factory(self, port: int) -> Callable[[], ClientConnection]:
        return lambda: ClientConnection(self, port)

    def bound(self) -> dict[str, int]:
        """Agent -> the port actually bound (after binding port 0 in tests)."""
        out = {}
        for port, server in self.servers.items():
            agent = self.snapshot.agent_by_port.get(port, "?")
            out[agent] = server.sockets[0].getsockname()[1]
        return out

    async def apply(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        await self.sync_listeners()

    def cut(self, agent: str) -> int:
        """Close every connection of ``agent`` now (quarantine); returns how many."""
        mine = [c for c in self.conns if self.snapshot.agent_by_port.get(c.port) == agent]
        for conn in mine:
            conn.cut(reasons.QUARANTINED)
        return len(mine)

    # -- connection caps
    def admit(self, port: int) -> bool:
        """May this listener take one more connection? Under its agent's cap, and under the
        process total unless the agent holds fewer than ``AGENT_RESERVE`` (kept for it)."""
        held = self.per_port.get(port, 0)
        lim = self.snapshot.limits
        if held >= lim.agent_connections or (
                held >= AGENT_RESERVE and len(self.conns) >= min(lim.connections, self.fd_cap)):
            return False
        self.per_port[port] = held + 1
        return True

    def release(self, port: int) -> None:
        self.per_port[port] -= 1

    # -- timeouts
    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.tick += 1
            lim = self.snapshot.limits
            header = math.ceil(lim.header_timeout_s / self.tick_s)
            idle = math.ceil(lim.idle_timeout_s / self.tick_s)
            for conn in list(self.conns):
                conn.expire(self.tick, header, idle)
            self.pool.expire(self.tick, math.ceil(POOL_IDLE_S / self.tick_s))

    # -- shutdown
    async def drain(self, seconds: float) -> int:
        """Stop accepting, let open flows finish for up to ``seconds``; returns flows cut."""
        self.draining = True
        self.pool.close_all()
        for server in self.servers.values():
            server.close()
        for conn in list(self.conns):
            conn.close_if_idle()
        deadline = time.monotonic() + seconds
        while self.conns and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        cut = len(self.conns)
        for conn in list(self.conns):
            conn.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        return cut
