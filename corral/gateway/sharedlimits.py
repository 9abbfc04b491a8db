"""Rate and byte quota shared by the worker processes of one gateway (``--workers N``).

Each agent has one small file in a directory the supervisor creates (``Options.limits_dir``),
mapped into every worker: four numbers (window id, bytes used in the window, tokens, last
refill) changed only under ``flock``. The token bucket takes one token per request under the
lock. The byte quota hands each worker *leases* of at most ``LEASE_MAX`` bytes (and 1/64 of the
quota) that it spends locally, so the lock is taken once per lease, not per chunk: bytes sent
never exceed the bytes leased, and the leases never exceed the quota. Replicas divide the
configured limits instead (``--limit-share``, see ``LimitPlan``); docs/gateway.md states the
resulting bounds.
"""

from __future__ import annotations

import fcntl
import math
import mmap
import os
import struct
from dataclasses import dataclass

from corral.gateway.ratelimit import AgentLimits, Clock, build_limits

_SLOT = struct.Struct("<dddd")  # window id, used bytes, tokens, last refill (0: never)
LEASE_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """How this process's limits relate to the agent's configured ceiling."""

    share: int = 1  # replicas dividing each limit (each enforces limit // share)
    shared_dir: str | None = None  # set in workers: the supervisor's counters directory

    def part(self, value: int | None) -> int | None:
        return None if value is None else max(1, value // self.share)


class Slot:
    """One agent's counters in a file shared by the workers; every change under ``flock``."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size < _SLOT.size:
            os.ftruncate(fd, _SLOT.size)
        self._fd = fd
        self._map = mmap.mmap(fd, _SLOT.size)

    def __enter__(self) -> list[float]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return list(_SLOT.unpack_from(self._map))

    def store(self, values: list[float]) -> None:
        _SLOT.pack_into(self._map, 0, *values)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def read(self) -> list[float]:
        return list(_SLOT.unpack_from(self._map))


class SharedTokenBucket:
    """``TokenBucket`` over a ``Slot``: ``per_minute`` requests per minute for all workers."""

    __slots__ = ("_clock", "_rate", "_slot", "capacity")

    def __init__(self, per_minute: int, clock: Clock, slot: Slot) -> None:
        self.capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._slot = slot

    def take(self) -> int:
        now = self._clock()
        with self._slot as v:
            tokens = self.capacity if v[3] == 0 else min(
                self.capacity, v[2] + (now - v[3]) * self._rate)
            ok = tokens >= 1.0
            v[2], v[3] = (tokens - 1.0 if ok else tokens), now
            self._slot.store(v)
        return 0 if ok else max(1, math.ceil((1.0 - tokens) / self._rate))


class SharedByteQuota:
    """``ByteQuota`` over a ``Slot``: at most ``limit`` bytes per window for all workers."""

    __slots__ = ("_clock", "_lease", "_slot", "_step", "_wid", "_window", "limit")

    def __init__(self, limit: int, clock: Clock, slot: Slot, window_s: float = 3600.0) -> None:
        self.limit = limit
        self._clock = clock
        self._slot = slot
        self._window = window_s
        self._step = max(1, min(LEASE_MAX, limit // 64))
        self._wid = -1.0
        self._lease = 0  # bytes leased from the shared pool, not spent yet

    def _roll(self) -> float:
        now = self._clock()
        wid = now // self._window
        if wid != self._wid:
            self._wid, self._lease = wid, 0
        return now

    def _shared_used(self) -> float:
        v = self._slot.read()
        return v[1] if v[0] == self._wid else 0.0

    @property
    def used(self) -> int:
        """Bytes of the window already taken by every worker, less this one's unspent lease."""
        self._roll()
        return int(self._shared_used()) - self._lease

    def _take(self, want: int) -> int:
        with self._slot as v:
            if v[0] != self._wid:
                v[0], v[1] = self._wid, 0.0
            grant = int(min(want, max(0.0, self.limit - v[1])))
            v[1] += grant
            self._slot.store(v)
        return grant

    def spend(self, n: int) -> bool:
        """Count ``n`` bytes about to be sent; True when they would cross the quota."""
        self._roll()
        if n <= self._lease:
            self._lease -= n
            return False
        need = n - self._lease
        grant = self._take(max(need, self._step))
        if grant < need:
            self._lease = 0
            return True
        self._lease += grant - n
        return False

    def retry_after(self) -> int:
        now = self._roll()
        if self._lease > 0 or self._shared_used() < self.limit:
            return 0
        return max(1, math.ceil(self._window - now % self._window))

    def seconds_left(self) -> int:
        now = self._roll()
        return max(1, math.ceil(self._window - now % self._window))


def build(agent: str, per_minute: int | None, bytes_per_hour: int | None, clock: Clock,
          plan: LimitPlan) -> AgentLimits:
    """The agent's limiters for this process: its replica's part, shared by its workers."""
    rate, quota = plan.part(per_minute), plan.part(bytes_per_hour)
    if plan.shared_dir is None:
        found = build_limits(rate, quota, clock)
    else:
        base = os.path.join(plan.shared_dir, agent)
        found = AgentLimits(
            key=(rate, quota),
            rate=SharedTokenBucket(rate, clock, Slot(f"{base}.rate")) if rate else None,
            quota=SharedByteQuota(quota, clock, Slot(f"{base}.quota")) if quota else None)
    found.key = (per_minute, bytes_per_hour)
    return found
