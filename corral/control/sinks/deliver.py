"""The delivery loop between a sink's disk queue and the sink: batches, retries, backoff.

Oldest items first, ``batch`` at a time. Success deletes them; a retryable failure keeps them and
waits ``backoff`` (doubling up to ``backoff_max``, reset on success); a permanent failure moves
the batch to the dead-letter table. ``sleep`` and ``clock`` are injected so tests need no time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from corral.control.sinks.base import Sink, SinkError
from corral.control.sinks.queue import DiskQueue

log = logging.getLogger("corral.control.sinks")


@dataclass
class Stats:
    delivered: int = 0
    failures: int = 0
    dead: int = 0


class Deliverer:
    def __init__(self, sink: Sink, queue: DiskQueue, *, batch: int, backoff: float,
                 backoff_max: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float], poll: float | None = None) -> None:
        self.sink, self.queue = sink, queue
        self._batch, self._first, self._max = batch, backoff, backoff_max
        self._sleep, self._clock = sleep, clock
        self._wake = asyncio.Event()
        self.stats = Stats()
        self.delay = 0.0  # current backoff (0 when healthy)
        self._poll = poll  # also look at the queue this often (another process appends to it)

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            if not await self.step():
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)

    async def step(self) -> bool:
        """Try one batch; True when something was delivered or dropped (there may be more)."""
        rows = self.queue.peek(self._batch)
        if not rows:
            return False
        try:
            await self.sink.emit([item for _, item in rows])
        except SinkError as exc:
            return await self._failed(rows, exc)
        self.queue.ack([i for i, _ in rows])
        self.stats.delivered += len(rows)
        self.delay = 0.0
        return True

    async def _failed(self, rows: list[tuple[int, dict[str, Any]]], exc: SinkError) -> bool:
        self.stats.failures += 1
        if not exc.retryable:
            log.error("sink %s refused %d items, dead-lettered: %s", self.sink.name, len(rows), exc)
            self.queue.dead(rows, str(exc), self._clock())
            self.stats.dead += len(rows)
            return True
        self.delay = min(self._max, self.delay * 2 if self.delay else self._first)
        log.warning("sink %s failed (%s); %d queued, retry in %.1fs",
                    self.sink.name, exc, self.queue.depth, self.delay)
        await self._sleep(self.delay)
        return True
