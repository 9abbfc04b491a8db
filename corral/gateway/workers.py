"""``--workers N``: a supervisor process and N gateway worker processes sharing the agent ports.

Each worker is a fresh interpreter (``python -m corral.gateway.workers``) running the one-process
``Runtime`` without an admin port, its listeners bound with SO_REUSEPORT so the kernel spreads
connections. The supervisor owns the admin port: ``/metrics`` aggregates the workers through
prometheus-client's multiprocess files, the quarantine API and the overlay file are pushed to
every worker over its stdin (one JSON line, applied at once), and SIGHUP/SIGTERM are forwarded.
A worker says "ready" on a pipe of its own: its stdout is the supervisor's, where ``--log -``
access lines go (a pipe nobody reads would lose them and, once full, block the worker).
A worker that dies is started again. Rate limits and quotas are per worker (docs/gateway.md).
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

from corral.gateway import app, state
from corral.gateway.server import AdminServer

log = logging.getLogger("corral.gateway.workers")
RESTART_PAUSE = 1.0


class Worker:
    def __init__(self, index: int, opts: app.Options, metrics_dir: str) -> None:
        self.index = index
        self.opts = opts
        self.metrics_dir = metrics_dir
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = False

    async def start(self, quarantined: frozenset[str]) -> None:
        opts = dataclasses.replace(self.opts, workers=1, reuse_port=True, overlay=None)
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=self.metrics_dir)
        ready_r, ready_w = os.pipe()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "corral.gateway.workers",
                orjson.dumps(dataclasses.asdict(opts)).decode(), str(ready_w),
                stdin=subprocess.PIPE, env=env, pass_fds=(ready_w,))
        finally:
            os.close(ready_w)
        self.ready = False
        await self.send(quarantined)
        self.ready = await _read_ready(ready_r)

    async def send(self, quarantined: frozenset[str]) -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.returncode is not None:
            return
        self.proc.stdin.write(orjson.dumps({"quarantined": sorted(quarantined)}) + b"\n")
        with contextlib.suppress(ConnectionError):
            await self.proc.stdin.drain()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)


async def _read_ready(fd: int) -> bool:
    """The worker's one line on its ready pipe ("" when it died first); closes the pipe."""
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    try:
        return (await reader.readline()).strip() == b"ready"
    finally:
        transport.close()


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

    def ready(self) -> bool:
        return all(w.ready and w.proc is not None and w.proc.returncode is None
                   for w in self.workers) and not self.stopping.is_set()

    def metrics_text(self) -> tuple[bytes, str]:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.metrics_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def quarantined(self) -> list[str]:
        return sorted(self.quarantine)

    def known_agents(self) -> list[str]:
        return [a.name for a in self.snapshot.policy.spec.agents]

    async def set_quarantine(self, agent: str, on: bool) -> None:
        q = self.quarantine | {agent} if on else self.quarantine - {agent}
        await self._push(frozenset(q))
        if self.opts.overlay is not None:
            app.write_overlay(self.opts.overlay, q)
            self._overlay_key = app.file_key(self.opts.overlay)

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
                with contextlib.suppress(OSError, ValueError):
                    await self._push(app.read_overlay(self.opts.overlay))

    def reload(self) -> None:
        with contextlib.suppress(Exception):
            self.snapshot = state.load_snapshot(self.opts.policy_path, self.quarantine)
        for w in self.workers:
            w.signal(signal.SIGHUP)


async def _supervise(opts: app.Options) -> int:
    with tempfile.TemporaryDirectory(prefix="corral-metrics-") as metrics_dir:
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
async def _worker(opts: app.Options, ready_fd: int) -> int:
    rt = app.Runtime(opts, app.load_initial(opts), say=lambda _text: None)
    rt.install_signals()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    first = await reader.readline()
    rt.apply_quarantine(state.parse_overlay(first))
    await rt.start(admin=False)
    os.write(ready_fd, b"ready\n")
    os.close(ready_fd)
    listen = loop.create_task(_follow(reader, rt), name="supervisor-pipe")
    await rt.stopping.wait()
    listen.cancel()
    await rt.stop()
    return 0


async def _follow(reader: asyncio.StreamReader, rt: app.Runtime) -> None:
    while line := await reader.readline():
        with contextlib.suppress(ValueError):
            rt.apply_quarantine(state.parse_overlay(line))
    rt.stopping.set()  # the supervisor is gone: drain and exit


def main(argv: list[str]) -> int:
    doc: dict[str, Any] = orjson.loads(argv[0])
    if doc.get("resolver") is not None:
        doc["resolver"] = tuple(doc["resolver"])
    opts = app.Options(**doc)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    app.raise_fd_limit()
    try:
        code: int = uvloop.run(_worker(opts, int(argv[1])))
    except OSError as exc:
        print(f"error: gateway worker cannot start: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
