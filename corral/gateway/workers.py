"""``--workers N``: a supervisor process and N gateway worker processes sharing the agent ports.

Each worker is a fresh interpreter (``python -m corral.gateway.workers``) running the one-process
``Runtime`` without an admin port, its listeners bound with SO_REUSEPORT so the kernel spreads
connections. The supervisor owns the admin port: ``/metrics`` aggregates the workers through
prometheus-client's multiprocess files, the quarantine API and the overlay file are pushed to
every worker over its stdin (one JSON line, applied at once), and SIGHUP/SIGTERM are forwarded.
A worker that dies is started again. Rate limits and quotas are shared by the workers through
files in a directory the supervisor creates (``sharedlimits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import orjson
import uvloop
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from corral.gateway import app, quarantine, state
from corral.gateway.server import AdminServer

log = logging.getLogger("corral.gateway.workers")
RESTART_PAUSE = 1.0
STATUS_FD_ENV = "CORRAL_WORKER_STATUS_FD"
BEAT_SECONDS = 1.0  # a worker reports "ok" (or "stuck": its access log is stalled) this often
BEAT_TIMEOUT = 5.0  # no report for this long: its event loop is blocked, it is not ready


async def _reader(fd: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 os.fdopen(fd, "rb", buffering=0))
    return reader


class Worker:
    def __init__(self, index: int, opts: app.Options, metrics_dir: str) -> None:
        self.index = index
        self.opts = opts
        self.metrics_dir = metrics_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = False
        self.beat = 0.0  # monotonic time of the last heartbeat
        self.healthy = False  # the last heartbeat said the data path moves
        self._status: asyncio.Task[None] | None = None

    def alive(self) -> bool:
        """Started, running, and its event loop and access log moved within ``BEAT_TIMEOUT``."""
        return (self.ready and self.healthy and self.proc is not None
                and self.proc.returncode is None
                and time.monotonic() - self.beat < BEAT_TIMEOUT)

    async def start(self, quarantined: frozenset[str]) -> None:
        # no admin port in a worker, so no admin token: argv is readable in /proc/PID/cmdline
        opts = dataclasses.replace(self.opts, workers=1, reuse_port=True, overlay=None,
                                   state=None, admin_token=None)
        # stdout is inherited: the worker writes its access lines there itself, so no reader
        # of ours sits in the data path; its status comes over a pipe of its own
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=self.metrics_dir,
                   **{STATUS_FD_ENV: str(write_fd)})
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "corral.gateway.workers",
                orjson.dumps(dataclasses.asdict(opts)).decode(),
                stdin=subprocess.PIPE, env=env, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        self.ready = False
        status = await _reader(read_fd)
        await self.send(quarantined)
        line = await status.readline()
        self.ready = line.strip() == b"ready"
        self.beat, self.healthy = time.monotonic(), self.ready
        self._status = asyncio.get_running_loop().create_task(self._follow(status),
                                                              name=f"worker-{self.index}-status")

    async def _follow(self, status: asyncio.StreamReader) -> None:
        while line := await status.readline():
            self.beat, self.healthy = time.monotonic(), line.strip() == b"ok"

    async def send(self, quarantined: frozenset[str]) -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.returncode is not None:
            return
        self.proc.stdin.write(orjson.dumps({"quarantined": sorted(quarantined)}) + b"\n")
        with contextlib.suppress(ConnectionError):
            await self.proc.stdin.drain()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)


class Supervisor:
    """The admin backend over N workers."""

    def __init__(self, opts: app.Options, snapshot: state.Snapshot, metrics_dir: str) -> None:
        self.opts = opts
        self.snapshot = snapshot
        self.metrics_dir = metrics_dir
        self.quarantine = snapshot.quarantined
        self.workers = [Worker(i, opts, metrics_dir) for i in range(opts.workers)]
        self.stopping = asyncio.Event()
        self.fatal: str | None = None
        self._overlay_key = app.file_key(opts.overlay or "")
        self.qfiles = quarantine.QuarantineFiles(opts.overlay, opts.state)
        with contextlib.suppress(OSError, ValueError):  # load_initial already reported it
            self.qfiles.initial()

    def ready(self) -> bool:
        return all(w.alive() for w in self.workers) and not self.stopping.is_set()

    def metrics_text(self) -> tuple[bytes, str]:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.metrics_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def quarantined(self) -> list[str]:
        return sorted(self.quarantine)

    def known_agents(self) -> list[str]:
        return [a.name for a in self.snapshot.policy.spec.agents]

    async def set_quarantine(self, agent: str, on: bool) -> bool:
        q = frozenset(self.quarantine | {agent} if on else self.quarantine - {agent})
        await self._push(q)
        saved = self.qfiles.persist(q)
        self._overlay_key = app.file_key(self.opts.overlay or "")
        return saved

    async def _push(self, quarantined: frozenset[str]) -> None:
        self.quarantine = quarantined
        for w in self.workers:
            await w.send(quarantined)

    async def keep(self, worker: Worker) -> None:
        """Run one worker; start it again when it dies, until the supervisor stops.

        A worker that dies before it was ever ready (port in use, bad policy) stops the
        supervisor: restarting it would only repeat the failure.
        """
        started = False
        while not self.stopping.is_set():
            await worker.start(self.quarantine)
            assert worker.proc is not None
            if not worker.ready and not started:
                await worker.proc.wait()
                code = worker.proc.returncode
                self.fatal = f"worker {worker.index} failed to start (exit {code})"
                self.stopping.set()
                return
            started = True
            code = await worker.proc.wait()
            worker.ready = False
            multiprocess.mark_process_dead(worker.proc.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            if not self.stopping.is_set():
                log.error("gateway: worker %d exited %s; starting it again", worker.index, code)
                await asyncio.sleep(RESTART_PAUSE)

    async def watch(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(self.opts.poll_seconds)
            key = app.file_key(self.opts.overlay or "")
            if key != self._overlay_key:
                self._overlay_key = key
                try:
                    agents = app.read_overlay(self.opts.overlay)
                except (OSError, ValueError) as exc:
                    log.error("gateway: overlay %s ignored: %s", self.opts.overlay, exc)
                    continue
                await self._push(agents)
                self.qfiles.overlay_changed(agents)

    def reload(self) -> None:
        with contextlib.suppress(Exception):
            self.snapshot = state.load_snapshot(self.opts.policy_path, self.quarantine)
        for w in self.workers:
            w.signal(signal.SIGHUP)


async def _supervise(opts: app.Options) -> int:
    with tempfile.TemporaryDirectory(prefix="corral-metrics-") as metrics_dir, \
            tempfile.TemporaryDirectory(prefix="corral-limits-") as limits_dir:
        opts = dataclasses.replace(opts, limits_dir=limits_dir)  # counters the workers share
        sup = Supervisor(opts, app.load_initial(opts), metrics_dir)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, sup.reload)
        loop.add_signal_handler(signal.SIGTERM, sup.stopping.set)
        loop.add_signal_handler(signal.SIGINT, sup.stopping.set)
        keepers = [loop.create_task(sup.keep(w), name=f"worker-{w.index}") for w in sup.workers]
        watcher = loop.create_task(sup.watch(), name="overlay-watch")
        deadline = time.monotonic() + 30
        while not sup.ready() and time.monotonic() < deadline and not sup.stopping.is_set():
            await asyncio.sleep(0.05)
        if sup.fatal is not None or not sup.ready():
            for w in sup.workers:
                w.signal(signal.SIGKILL)
            await asyncio.wait(keepers, timeout=5)
            watcher.cancel()
            print(f"error: {sup.fatal or 'workers not ready after 30 s'}", file=sys.stderr)
            return 2
        port = opts.admin_port
        admin = AdminServer(sup, opts.listen, sup.snapshot.policy.spec.gateway.admin_port
                            if port is None else port, opts.admin_token)
        admin_port = await admin.start()
        for agent, p in sorted(sup.snapshot.policy.spec.listener_ports().items(),
                               key=lambda kv: kv[1]):
            print(f"agent {agent} -> {app.hostport(opts.listen, p)}", file=sys.stderr)
        print(f"admin -> {app.hostport(opts.listen, admin_port)} ({opts.workers} workers)",
              file=sys.stderr, flush=True)
        await sup.stopping.wait()
        admin.close()
        for w in sup.workers:
            w.signal(signal.SIGTERM)
        await asyncio.wait(keepers, timeout=opts.drain_seconds + 5)
        watcher.cancel()
        for w in sup.workers:
            w.signal(signal.SIGKILL)
    return 0


def supervise(opts: app.Options) -> int:
    return uvloop.run(_supervise(opts))


# -- worker side
async def _worker(opts: app.Options) -> int:
    rt = app.Runtime(opts, app.load_initial(opts), say=lambda _text: None)
    rt.install_signals()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    first = await reader.readline()
    rt.apply_quarantine(state.parse_overlay(first))
    await rt.start(admin=False)
    status = int(os.environ[STATUS_FD_ENV])
    os.set_blocking(status, False)
    _say(status, b"ready\n")
    listen = loop.create_task(_follow(reader, rt), name="supervisor-pipe")
    beat = loop.create_task(_heartbeat(status, rt), name="heartbeat")
    await rt.stopping.wait()
    listen.cancel()
    beat.cancel()
    await rt.stop()
    return 0


def _say(fd: int, line: bytes) -> None:
    with contextlib.suppress(BlockingIOError, BrokenPipeError):  # the supervisor reads on
        os.write(fd, line)


async def _heartbeat(fd: int, rt: app.Runtime) -> None:
    """Sent from the event loop: if the loop is blocked, the beats stop."""
    while True:
        await asyncio.sleep(BEAT_SECONDS)
        _say(fd, b"stuck\n" if rt.log.stalled() else b"ok\n")


async def _follow(reader: asyncio.StreamReader, rt: app.Runtime) -> None:
    while line := await reader.readline():
        with contextlib.suppress(ValueError):
            rt.apply_quarantine(state.parse_overlay(line))
    rt.stopping.set()  # the supervisor is gone: drain and exit


def main(argv: list[str]) -> int:
    doc: dict[str, Any] = orjson.loads(argv[0])
    if doc.get("resolver") is not None:
        doc["resolver"] = tuple(doc["resolver"])
    doc["control_plane"] = tuple(doc.get("control_plane", ()))
    opts = app.Options(**doc)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    app.raise_fd_limit()
    try:
        code: int = uvloop.run(_worker(opts))
    except OSError as exc:
        print(f"error: gateway worker cannot start: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
