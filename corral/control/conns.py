"""Connection bounds for the control plane's HTTP server: caps, timeouts, buffered bytes.

Where it sits: ``server.py`` registers every connection here and asks before buffering a body;
a sweeper calls ``sweep`` about once a second. No sockets here, only bookkeeping over the
``Conn`` seam, so the rules are tested without a network.

- **Caps with headroom**: at most ``max_connections`` in all, of which at most
  ``max_unauthenticated`` have not yet sent an authenticated request. A new connection beyond
  that evicts the oldest unauthenticated one, so a flood of idle sockets cycles through its own
  share while Falco's authenticated connections keep theirs, and a fresh Falco connection gets
  in (it authenticates with its first request, long before a flood's turn comes round again).
- **Timeouts**: a request must arrive whole within ``header_timeout`` of its first byte (408);
  a connection with nothing in flight is closed after ``idle_timeout``, or after
  ``header_timeout`` while it never authenticated.
- **Buffered bytes**: request bodies held across all connections stay under ``max_inflight``
  (beyond it: 503 with Retry-After, and the connection is closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0  # seconds for a whole request (head and body) to arrive
    idle_timeout: float = 75.0  # seconds an authenticated kept-alive connection may idle
    max_connections: int = 4096  # open connections in all (below the file-descriptor limit)
    max_unauthenticated: int = 3072  # of those, not yet authenticated: the rest is headroom
    max_inflight: int = 32 << 20  # request-body bytes buffered across all connections


class Conn(Protocol):
    """What the gate needs of a connection."""

    busy_since: float | None  # first byte of the request being received
    last_seen: float  # last byte received or response sent

    def idle(self) -> bool: ...

    def expire(self, status: int | None) -> None: ...


class Gate:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._untrusted: dict[Conn, None] = {}  # oldest first
        self._trusted: set[Conn] = set()
        self.inflight = 0
        self.evicted = 0
        self.timed_out = 0

    def __len__(self) -> int:
        return len(self._untrusted) + len(self._trusted)

    def admit(self, conn: Conn, *, trusted: bool) -> bool:
        """Register a new connection; False when it must be closed at once."""
        lim = self.limits
        while self._untrusted and (len(self) >= lim.max_connections or (
                not trusted and len(self._untrusted) >= lim.max_unauthenticated)):
            self._evict()
        if len(self) >= lim.max_connections:
            return False
        if trusted:
            self._trusted.add(conn)
        else:
            self._untrusted[conn] = None
        return True

    def trust(self, conn: Conn) -> None:
        """The connection sent an authenticated request: it leaves the evictable share."""
        if self._untrusted.pop(conn, False) is None:
            self._trusted.add(conn)

    def leave(self, conn: Conn) -> None:
        self._untrusted.pop(conn, None)
        self._trusted.discard(conn)

    def trusted(self, conn: Conn) -> bool:
        return conn in self._trusted

    def reserve(self, size: int) -> bool:
        """Account ``size`` more buffered body bytes; False (nothing reserved) past the cap."""
        if self.inflight + size > self.limits.max_inflight:
            return False
        self.inflight += size
        return True

    def release(self, size: int) -> None:
        self.inflight = max(0, self.inflight - size)

    def sweep(self, now: float) -> None:
        """Expire requests that take too long and connections idle too long."""
        lim = self.limits
        for conn in [*self._untrusted, *self._trusted]:
            if conn.busy_since is not None:
                if now - conn.busy_since > lim.header_timeout:
                    self.timed_out += 1
                    conn.expire(408)
            elif conn.idle():
                limit = lim.idle_timeout if conn in self._trusted else lim.header_timeout
                if now - conn.last_seen > limit:
                    conn.expire(None)

    def _evict(self) -> None:
        oldest = next(iter(self._untrusted))
        del self._untrusted[oldest]
        self.evicted += 1
        oldest.expire(None)
