"""The canonical access log: one JSON line per request or tunnel, emitted once when it ends.

Field names come only from ``corral.model.records``; the review loop and the control plane read
exactly these lines. Lines are buffered and written by a short timer (and when the buffer grows,
and at shutdown), so the hot path only appends bytes to a list.

The writer can never stall the event loop: a pipe (``--log -`` in a container, where the
runtime reads stdout) is written non-blocking, in whole lines of at most ``PIPE_BUF`` bytes per
``write`` so that the lines of several workers sharing one pipe never interleave. When nobody
reads, lines wait in a bounded buffer (``MAX_PENDING``); beyond it they are dropped and counted
(``corral_gateway_log_dropped_lines_total``), and ``stalled()`` turns true after
``STALL_SECONDS`` without progress, which makes ``/readyz`` fail.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import stat
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from corral.model import records as R
from corral.model.records import AccessRecord

FLUSH_SECONDS = 0.2
FLUSH_BYTES = 64 * 1024
MAX_PENDING = 8 * 1024 * 1024  # bytes of lines waiting for a slow reader before dropping
STALL_SECONDS = 5.0
PIPE_BUF = select.PIPE_BUF  # a write of at most this many bytes to a pipe is atomic


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
    """Buffered, never-blocking writer to stdout (``-``) or an append-only file."""

    def __init__(self, target: str = "-", clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self._fd = sys.stdout.fileno() if target == "-" else os.open(
            target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._own = target != "-"
        mode = os.fstat(self._fd).st_mode
        self._chunk = 4 * FLUSH_BYTES  # a regular file: big writes (O_APPEND keeps lines whole)
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode):
            self._nonblocking(stat.S_ISFIFO(mode))
            self._chunk = PIPE_BUF
        self._clock = clock
        self._buf: list[bytes] = []
        self._size = 0
        self._blocked_since: float | None = None
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def _nonblocking(self, fifo: bool) -> None:
        """A reader that stops must not stop the gateway. A pipe is opened again through
        /proc, so only this writer's description turns non-blocking (stdout may be shared with
        stderr or a parent); where that is impossible, the shared one is switched."""
        if fifo and self.target == "-":
            try:
                self._fd = os.open(f"/proc/self/fd/{self._fd}", os.O_WRONLY | os.O_NONBLOCK)
                self._own = True
                return
            except OSError:
                pass
        os.set_blocking(self._fd, False)

    def write(self, record: AccessRecord) -> None:
        line = encode(record)
        if self._size + len(line) > MAX_PENDING:
            self.dropped += 1
            return
        self._buf.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES and self._blocked_since is None:
            self.flush()

    def flush(self) -> None:
        """Write what the destination takes now, in whole lines; keep the rest for later."""
        buf = self._buf
        done = 0
        try:
            while done < len(buf):
                chunk, count = _batch(buf, done, self._chunk)
                written = os.write(self._fd, chunk)
                if written < len(chunk):  # only a line longer than PIPE_BUF gets here
                    buf[done + count - 1] = chunk[written:]
                    buf[done:done + count - 1] = []
                    self._size -= written
                    break
                done += count
                self._size -= written
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            self.dropped += len(buf) - done  # the reader is gone for good
            done, self._size = len(buf), 0
        del buf[:done]
        self._blocked_since = None if not buf else (self._blocked_since or self._clock())

    def stalled(self) -> bool:
        """Lines have waited for the reader longer than ``STALL_SECONDS``."""
        since = self._blocked_since
        return since is not None and self._clock() - since > STALL_SECONDS

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
        self.dropped += len(self._buf)  # a reader that never came back: counted, not awaited
        self._buf.clear()
        if self._own:
            os.close(self._fd)


def _batch(buf: list[bytes], start: int, limit: int) -> tuple[bytes, int]:
    """Lines from ``start`` joined up to ``limit`` bytes (at least one line), and how many."""
    size, end = len(buf[start]), start + 1
    while end < len(buf) and size + len(buf[end]) <= limit:
        size += len(buf[end])
        end += 1
    return (buf[start] if end == start + 1 else b"".join(buf[start:end])), end - start


def field_names() -> tuple[str, ...]:
    return R.ACCESS_FIELDS
