"""Per-agent request rate (token bucket) and outbound byte quota (hourly window). Pure, clocked.

Both take the clock as an argument so tests step time instead of sleeping. The gateway keeps one
``AgentLimits`` per agent across policy reloads (rebuilt only when that agent's limits change).
These are one process's limiters; ``sharedlimits`` has the variants the workers of one gateway
share, and divides a limit between replicas (docs/gateway.md states the bounds).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]


class Bucket(Protocol):
    def take(self) -> int: ...


class Quota(Protocol):
    limit: int

    @property
    def used(self) -> int: ...
    def retry_after(self) -> int: ...
    def seconds_left(self) -> int: ...
    def spend(self, n: int) -> bool: ...


class TokenBucket:
    """``per_minute`` requests per minute, bursting up to ``per_minute``."""

    __slots__ = ("_clock", "_last", "_rate", "_tokens", "capacity")

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()

    def take(self) -> int:
        """0 when a request may pass (and spend a token); else seconds until one is available."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self._tokens) / self._rate))


class ByteQuota:
    """At most ``limit`` bytes sent upstream per window (one clock hour by default)."""

    __slots__ = ("_clock", "_window", "_window_id", "limit", "used")

    def __init__(self, limit: int, clock: Clock, window_s: float = 3600.0) -> None:
        self.limit = limit
        self._clock = clock
        self._window = window_s
        self._window_id = -1.0
        self.used = 0

    def _roll(self) -> float:
        now = self._clock()
        wid = now // self._window
        if wid != self._window_id:
            self._window_id = wid
            self.used = 0
        return now

    def retry_after(self) -> int:
        """0 when bytes may still be sent; else seconds until the window resets."""
        now = self._roll()
        if self.used < self.limit:
            return 0
        return max(1, math.ceil(self._window - now % self._window))

    def seconds_left(self) -> int:
        """Seconds until the current window ends."""
        now = self._roll()
        return max(1, math.ceil(self._window - now % self._window))

    def spend(self, n: int) -> bool:
        """Count ``n`` bytes sent; True when the quota is now exceeded."""
        self._roll()
        self.used += n
        return self.used > self.limit


@dataclass(slots=True)
class AgentLimits:
    """One agent's limiters and open-tunnel count; kept across reloads while unchanged."""

    key: tuple[int | None, int | None]
    rate: Bucket | None
    quota: Quota | None
    tunnels: int = 0


def build_limits(per_minute: int | None, bytes_per_hour: int | None, clock: Clock) -> AgentLimits:
    return AgentLimits(
        key=(per_minute, bytes_per_hour),
        rate=TokenBucket(per_minute, clock) if per_minute else None,
        quota=ByteQuota(bytes_per_hour, clock) if bytes_per_hour else None,
    )
