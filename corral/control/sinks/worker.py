"""Sink delivery in a child process, so the ingest process keeps its core for ingest.

``python -m corral.control.sinks.worker STATE_DIR`` reads the sink specs (one JSON line, the
``spec.response.sinks`` entries) from stdin, runs one ``Deliverer`` per sink over the same queue
directories the parent appends to (one appender, one reader: see queue.py), and writes its
statistics as one JSON line every ``REPORT_S``. Every further stdin line is a wake-up (new items
queued); EOF stops it. Items not yet acknowledged stay on disk for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from corral.control.child import stop_child
from corral.control.sinks.build import build_sink
from corral.control.sinks.deliver import Deliverer
from corral.control.sinks.queue import DiskQueue
from corral.model.control import Sink as SinkSpec

log = logging.getLogger("corral.control.sinks.worker")
REPORT_S = 0.5
POLL_S = 0.2  # the parent's wake-ups are the fast path; this bounds a missed one


def queue_path(state_dir: Path, name: str) -> Path:
    return state_dir / "sinks" / name


class SinkProcess:
    """Parent side: start the worker, wake it, keep its latest statistics."""

    def __init__(self, state_dir: Path, specs: tuple[SinkSpec, ...],
                 on_exit: Callable[[int], None]) -> None:
        self._state_dir = state_dir
        self._specs = specs
        self._on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.stats: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        self._proc = None  # not "dead" while (re)starting
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.control.sinks.worker", str(self._state_dir),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert self._proc.stdin is not None
        specs = [s.model_dump(mode="json") for s in self._specs]
        self._proc.stdin.write(orjson.dumps(specs) + b"\n")
        self._reader = asyncio.get_running_loop().create_task(self._read(self._proc),
                                                              name="sink-worker-stats")

    def notify(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None and proc.stdin is not None:
            proc.stdin.write(b"\n")

    def dead(self) -> bool:
        return self._proc is not None and self._proc.returncode is not None

    async def aclose(self, timeout: float = 15.0) -> None:
        proc = self._proc
        if proc is None:
            return
        await stop_child(proc, self._reader, timeout)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            self.stats = orjson.loads(line)
        code = await proc.wait()
        if code != 0:
            self._on_exit(code)


async def run_worker(state_dir: Path, specs: list[SinkSpec]) -> None:
    async with aiohttp.ClientSession() as session:
        deliverers = {
            s.name: Deliverer(build_sink(s, session), DiskQueue(queue_path(state_dir, s.name),
                                                                s.max_queue),
                              batch=s.batch, backoff=s.backoff_s, backoff_max=s.backoff_max_s,
                              clock=time.time, poll=POLL_S)
            for s in specs}
        tasks = [asyncio.create_task(d.run(), name=f"deliver-{n}") for n, d in deliverers.items()]
        reporter = asyncio.create_task(_report(deliverers), name="report")
        try:
            await _wakeups(deliverers)
        finally:
            for t in [*tasks, reporter]:
                t.cancel()
            await asyncio.gather(*tasks, reporter, return_exceptions=True)
            _write_stats(deliverers)
            for d in deliverers.values():
                await d.sink.aclose()
                d.queue.close()


async def _wakeups(deliverers: dict[str, Deliverer]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        for d in deliverers.values():
            d.notify()


async def _report(deliverers: dict[str, Deliverer]) -> None:
    while True:
        _write_stats(deliverers)
        await asyncio.sleep(REPORT_S)


def _write_stats(deliverers: dict[str, Deliverer]) -> None:
    stats = {n: {"delivered": d.stats.delivered, "failures": d.stats.failures,
                 "dead": d.stats.dead, "retry_in_s": d.delay}
             for n, d in deliverers.items()}
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.buffer.write(orjson.dumps(stats) + b"\n")
        sys.stdout.buffer.flush()


def main(argv: list[str]) -> int:
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    first = sys.stdin.buffer.readline()
    specs = [SinkSpec.model_validate(s) for s in orjson.loads(first)]
    uvloop.run(run_worker(Path(argv[0]), specs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
