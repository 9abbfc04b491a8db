"""The destination side of a flow: ``Upstream`` connections and the pool of idle ones.

Plain-HTTP upstream connections are kept for reuse only under the key (agent, host, vetted
address, port), so nothing is shared across agents or names; an idle pooled connection that
receives bytes or closes is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from corral.gateway.protocol.http import ResponseReader

if TYPE_CHECKING:
    from corral.gateway.server.client import ClientConnection

PoolKey = tuple[str, str, str, int]  # agent, host, vetted address, port
POOL_PER_KEY = 32
POOL_IDLE_S = 30.0
POOL_TOTAL = 1024


class UpstreamPool:
    """Idle persistent upstream connections for plain HTTP, reused only for the same key.

    At most ``POOL_PER_KEY`` per key and ``POOL_TOTAL`` in all, so wildcard names cannot make
    the gateway hoard descriptors; idle ones expire after ``POOL_IDLE_S``.
    """

    def __init__(self) -> None:
        self._idle: dict[PoolKey, list[Upstream]] = {}
        self.size = 0

    def take(self, key: PoolKey) -> Upstream | None:
        idle = self._idle.get(key)
        while idle:
            up = idle.pop()
            self.size -= 1
            up.pooled = None
            if not idle:
                del self._idle[key]
            if up.transport is not None and not up.transport.is_closing():
                return up
            up.close()
        return None

    def put(self, key: PoolKey, up: Upstream, tick: int) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= POOL_PER_KEY or self.size >= POOL_TOTAL:
            if not idle:
                del self._idle[key]
            up.close()
            return
        up.conn = None
        up.pooled = (key, tick)
        if up.transport is not None:
            up.transport.resume_reading()  # it may have been paused for a slow client
        idle.append(up)
        self.size += 1

    def discard(self, up: Upstream) -> None:
        if up.pooled is not None:
            key = up.pooled[0]
            idle = self._idle.get(key, [])
            if up in idle:
                idle.remove(up)
                self.size -= 1
            if not idle:
                self._idle.pop(key, None)
            up.pooled = None
        up.close()

    def expire(self, tick: int, idle_ticks: int) -> None:
        for key in list(self._idle):
            for up in [u for u in self._idle.get(key, ()) if u.pooled
                       and tick - u.pooled[1] > idle_ticks]:
                self.discard(up)

    def close_all(self) -> None:
        for key in list(self._idle):
            for up in list(self._idle.get(key, ())):
                self.discard(up)


def const(up: Upstream) -> Callable[[], Upstream]:
    return lambda: up


class Upstream(asyncio.Protocol):
    """The gateway's connection to the destination; bytes go to its ``ClientConnection``."""

    __slots__ = ("conn", "live", "pending", "pool", "pooled", "reader", "received", "transport")

    def __init__(self, conn: ClientConnection, pool: UpstreamPool) -> None:
        self.conn: ClientConnection | None = conn
        self.pool = pool
        self.pooled: tuple[PoolKey, int] | None = None
        self.live = False
        self.received = False
        self.pending: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.reader: ResponseReader | None = None  # kept for the next response when pooled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def response_reader(self, head_only: bool, keep_alive: bool) -> ResponseReader:
        """A reader for the next response: the previous one's parser when that response ended
        cleanly on a persistent connection (a new httptools parser costs more than a reset)."""
        reader = self.reader
        if reader is None or not reader.reusable:
            reader = self.reader = ResponseReader(head_only=head_only, keep_alive=keep_alive)
        else:
            reader.reset(head_only, keep_alive)
        return reader

    def attach(self, conn: ClientConnection) -> None:
        """Hand a pooled connection to a new request."""
        self.conn = conn
        self.live = False
        self.received = False

    def go_live(self) -> None:
        self.live = True
        pending, self.pending = self.pending, []
        for data in pending:
            if self.conn is not None:
                self.conn.from_upstream(data)

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.conn is None:  # idle in the pool: nothing may arrive; never reuse it
            self.pool.discard(self)
        elif self.live:
            self.conn.from_upstream(data)
        else:
            self.pending.append(data)

    def eof_received(self) -> bool:
        self._gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()

    def _gone(self) -> None:
        if self.conn is None:
            self.pool.discard(self)
        else:
            self.conn.upstream_closed(self)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.pause_client()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.resume_client()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
