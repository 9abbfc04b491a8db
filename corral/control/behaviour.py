"""Behaviour aggregates, kept off the ingest process: a child process owns the AggregateStore.

Folding a Falco alert into the behaviour store (corral.store) costs about as much CPU as the
whole incident pipeline; in the ingest process it halved the request rate and stalled the event
loop for every batch. So ``corral serve`` hands accepted records, as JSON lines, to a child
process (``python -m corral.control.behaviour DB SELECTORS``) that runs on the other core.

Wire (the child's stdin): ``F <n>\\n`` or ``A <n>\\n`` then ``n`` bytes of JSON lines (Falco
alerts / gateway access records); the child answers one JSON line of ``IngestStats`` per frame.
The parent's pending bytes count toward the ingest backpressure; if the child dies its batch is
counted as lost aggregates (incidents are unaffected) and it is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from corral.control.child import stop_child
from corral.store.aggregates import AggregateStore

log = logging.getLogger("corral.control.behaviour")
MAX_FRAME = 8 << 20  # bytes per frame


class BehaviourFeed:
    """Parent side: buffer JSON lines, write them as frames, count acknowledgements."""

    def __init__(self, db: Path, selectors: dict[str, dict[str, str]],
                 on_error: Callable[[str], None]) -> None:
        self.db = db
        self._selectors = selectors
        self._on_error = on_error
        self._falco: list[bytes] = []
        self._access: list[bytes] = []
        self.pending = 0  # records buffered, not yet written
        self.pending_bytes = 0  # their size
        self.sent = self.acked = 0
        self.stats: dict[str, int] = {"records": 0, "rejected": 0}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = None  # not "dead" while (re)starting
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.control.behaviour", str(self.db),
            orjson.dumps(self._selectors).decode(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self.sent = self.acked = 0
        self._reader = asyncio.get_running_loop().create_task(self._acks(self._proc),
                                                              name="behaviour-acks")

    def add_falco(self, line: bytes) -> None:
        self._falco.append(line)
        self.pending += 1
        self.pending_bytes += len(line)

    def add_access(self, line: bytes) -> None:
        self._access.append(line)
        self.pending += 1
        self.pending_bytes += len(line)

    def backlog(self) -> int:
        """Bytes buffered here or written but not yet read by the child (the pipe's
        user-space buffer)."""
        stdin = self._proc.stdin if self._proc is not None else None
        queued = stdin.transport.get_write_buffer_size() if stdin is not None else 0
        return self.pending_bytes + queued

    def flush(self) -> None:
        frames = [(b"F", self._falco), (b"A", self._access)]
        self._falco, self._access, self.pending, self.pending_bytes = [], [], 0, 0
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            lost = sum(len(lines) for _, lines in frames)
            if lost:
                self._on_error(f"behaviour worker not running; {lost} records not aggregated")
            return
        for kind, lines in frames:
            for chunk in _chunks(lines):
                proc.stdin.write(kind + b" %d\n" % len(chunk) + chunk)
                self.sent += 1

    async def settle(self, timeout: float = 30.0) -> None:
        """Flush and wait until the child acknowledged every frame."""
        self.flush()
        async with asyncio.timeout(timeout):
            while self.acked < self.sent:
                if self._proc is None or self._proc.returncode is not None:
                    return
                await asyncio.sleep(0.01)

    def dead(self) -> bool:
        return self._proc is not None and self._proc.returncode is not None

    async def restart_if_dead(self) -> None:
        if self._proc is not None and self._proc.returncode is not None:
            self._on_error(f"behaviour worker exited ({self._proc.returncode}); restarting")
            await self.start()

    async def aclose(self, timeout: float = 30.0) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(TimeoutError, OSError):
            await self.settle(timeout)
        await stop_child(proc, self._reader, timeout)

    async def _acks(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            answer = orjson.loads(line)
            self.acked += 1
            for key in self.stats:
                self.stats[key] += int(answer.get(key, 0))
            if answer.get("errors"):
                log.warning("behaviour store refused records: %s", answer["errors"][:3])


def _chunks(lines: list[bytes]) -> list[bytes]:
    out, size, start = [], 0, 0
    for i, line in enumerate(lines):
        size += len(line) + 1
        if size >= MAX_FRAME:
            out.append(b"\n".join(lines[start:i + 1]) + b"\n")
            size, start = 0, i + 1
    if start < len(lines):
        out.append(b"\n".join(lines[start:]) + b"\n")
    return out


def one_line(obj: dict[str, Any], raw: bytes | None = None) -> bytes:
    """A record as one JSON line (the request body itself when it already is one)."""
    if raw is not None and b"\n" not in raw:
        return raw
    return orjson.dumps(obj)


def main(argv: list[str]) -> int:
    """The child: read frames from stdin, fold them into the store, answer each."""
    db, selectors = Path(argv[0]), orjson.loads(argv[1])
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    with AggregateStore.open(db) as store:
        while header := inp.readline():
            kind, _, size = header.partition(b" ")
            data = inp.read(int(size))
            lines = [x for x in data.split(b"\n") if x.strip()]  # not splitlines(): a bare CR
            if kind == b"F":                                    # is JSON whitespace
                bad: list[str] = []
                stats = store.ingest_falco(_decoded(lines, bad), selectors=selectors,
                                           where="falco")
                stats.rejected += len(bad)
                stats.errors.extend(bad[:10])
            else:
                stats = store.ingest_access_lines(lines, where="gateway", live=True)
            try:
                out.write(orjson.dumps(stats.as_dict()) + b"\n")
                out.flush()
            except BrokenPipeError:  # serve is gone (killed): the batch is stored, nobody asks
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())  # no flush error at exit
                return 0
    return 0


def _decoded(lines: list[bytes], bad: list[str]) -> Iterator[Any]:
    """Each line as JSON; an undecodable one is noted in ``bad`` instead of ending the worker."""
    for n, line in enumerate(lines, 1):
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            bad.append(f"falco:{n}: not valid JSON ({exc})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
