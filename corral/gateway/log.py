"""The canonical access log: one JSON line per request or tunnel, emitted once when it ends.

Field names come only from ``corral.model.records``; the review loop and the control plane read
exactly these lines. Lines are buffered and written by a short timer (and when the buffer grows,
and at shutdown), so the hot path only appends bytes to a list.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime

import orjson

from corral.model import records as R
from corral.model.records import AccessRecord

FLUSH_SECONDS = 0.2
FLUSH_BYTES = 64 * 1024


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class TimeText:
    """``rfc3339`` with the seconds part formatted once per second (the hot path's clock)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, epoch: float) -> str:
        second = int(epoch)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((epoch - second) * 1000):03d}Z"


def encode(record: AccessRecord) -> bytes:
    return orjson.dumps(record) + b"\n"


class AccessLog:
    """Buffered writer to stdout (``-``) or an append-only file."""

    def __init__(self, target: str = "-") -> None:
        self.target = target
        self._fd = sys.stdout.fileno() if target == "-" else os.open(
            target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._buf: list[bytes] = []
        self._size = 0
        self._task: asyncio.Task[None] | None = None

    def write(self, record: AccessRecord) -> None:
        line = encode(record)
        self._buf.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def start(self) -> None:
        """Start the flush timer on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._flusher(), name="access-log")

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.flush()
        if self.target != "-":
            os.close(self._fd)


def field_names() -> tuple[str, ...]:
    return R.ACCESS_FIELDS
