"""Follow a gateway access-log file like ``tail -F``: new lines, across rotation and truncation.

Rotation (the path now names another inode) is noticed after the old file was read to its end,
so no line is lost between the two; truncation (the file shrank) restarts at 0. As with
``tail -F``, a truncation that is refilled past the old offset between two polls goes unnoticed
(prefer rename rotation over copytruncate). The position
(inode, offset of the last complete line) can be saved and resumed after a restart. Polling
keeps it portable; ``sleep`` is injected so tests step it without waiting.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
MAX_CHUNKS_PER_POLL = 16  # bounded work per poll: the event loop stays responsive


class Tailer:
    def __init__(self, path: str | Path, on_line: Callable[[bytes], None], *,
                 start: tuple[int, int] | None = None, interval: float = 0.25,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.path = Path(path)
        self._on_line = on_line
        self._start = start  # (inode, offset) saved by a previous run
        self._interval = interval
        self._sleep = sleep
        self._f: BinaryIO | None = None
        self._inode = 0
        self._partial = b""
        self.lines = 0

    @property
    def position(self) -> tuple[int, int]:
        """(inode, offset just after the last complete line handed on)."""
        if self._f is None:
            return (self._inode, 0)
        return (self._inode, self._f.tell() - len(self._partial))

    async def run(self) -> None:
        while True:
            self.poll()
            await self._sleep(self._interval)

    def poll(self) -> int:
        """Read what is new; returns the number of lines handed on."""
        before = self.lines
        if self._f is None and not self._open():
            return 0
        self._drain()
        if self._rotated():
            self._drain()
            self.close()
            if self._open(from_start=True):
                self._drain()
        return self.lines - before

    def _open(self, from_start: bool = False) -> bool:
        try:
            f = self.path.open("rb")
        except OSError:
            return False
        st = os.fstat(f.fileno())
        self._f, self._inode, self._partial = f, st.st_ino, b""
        if not from_start and self._start and self._start[0] == st.st_ino \
                and self._start[1] <= st.st_size:
            f.seek(self._start[1])
        self._start = None
        return True

    def _drain(self) -> None:
        assert self._f is not None
        if os.fstat(self._f.fileno()).st_size < self._f.tell():  # truncated in place
            self._f.seek(0)
            self._partial = b""
        for _ in range(MAX_CHUNKS_PER_POLL):
            data = self._f.read(CHUNK)
            if not data:
                return
            *complete, self._partial = (self._partial + data).split(b"\n")
            for line in complete:
                if line.strip():
                    self.lines += 1
                    self._on_line(line)

    def _rotated(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return False  # moved away, new file not there yet: keep the old one

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
