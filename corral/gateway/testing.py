"""Helpers for tests (ours and users'): run a gateway on free loopback ports, a tiny DNS server.

- ``GatewayProcess``: ``corral gateway`` as a subprocess (real CLI, signals, reload), started
  from a policy file or ``Policy`` object with every agent on a free port, ready when ``/readyz``
  answers 200. Used by the e2e and benchmark code too.
- ``ThreadGateway``: the same ``Runtime`` in a thread with its own uvloop loop, for tests that
  inject a clock (monotonic for limits, wall for the log and its progress lines) or a resolver.
- ``StaticDns``: a UDP DNS server on loopback answering A/AAAA from a dict (a list of answers per
  name is served in turn, for rebinding tests); counts the queries it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import orjson
import uvloop
import yaml

from corral.gateway import app, state
from corral.model.policy import Policy

READY_TIMEOUT = 15.0


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``check`` every 50 ms until it holds or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports free right now (the kernel picks; a tiny race is possible)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def policy_on_free_ports(policy: Policy | dict[str, Any] | str | Path) -> dict[str, Any]:
    """The policy as plain data with every agent given an explicit free port (an agent that
    names its port keeps it)."""
    if isinstance(policy, Policy):
        doc = policy.dump()
    elif isinstance(policy, dict):
        doc = dict(policy)
    else:
        doc = yaml.safe_load(Path(policy).read_text(encoding="utf-8"))
    agents = doc["spec"]["agents"]
    for agent, port in zip(agents, free_ports(len(agents)), strict=True):
        agent.setdefault("port", port)
    return doc


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


@dataclass
class GatewayProcess:
    """``corral gateway`` in a subprocess on free ports. Use as a context manager."""

    policy: Policy | dict[str, Any] | str | Path
    resolver: str | None = None
    extra_args: tuple[str, ...] = ()
    wrap: tuple[str, ...] = ()  # a command prefix, e.g. ``unshare`` to reproduce mounts
    log_to_pipe: bool = False  # ``--log -`` into a pipe (``proc.stdout``) the test reads, or not
    workdir: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)
    admin_port: int = 0
    policy_path: Path = field(init=False)
    log_path: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="corral-gw-")
            self.workdir = Path(self._tmp.name)
        doc = policy_on_free_ports(self.policy)
        self.ports = {a["name"]: a["port"] for a in doc["spec"]["agents"]}
        self.admin_port = self.admin_port or free_ports(1)[0]
        self.policy_path = self.workdir / "corral.yaml"
        self.policy_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        self.log_path = self.workdir / "access.log"
        cmd = [*self.wrap, sys.executable, "-m", "corral", "gateway", "-f", str(self.policy_path),
               "--admin-port", str(self.admin_port),
               "--log", "-" if self.log_to_pipe else str(self.log_path),
               *(("--resolver", self.resolver) if self.resolver else ()), *self.extra_args]
        self.stderr_path = self.workdir / "stderr.txt"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE if self.log_to_pipe else subprocess.DEVNULL,
            stderr=self._stderr)
        self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}: {self.stderr()}")
            with contextlib.suppress(OSError):
                if self.admin("/readyz")[0] == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"gateway not ready after {timeout}s: {self.stderr()}")

    def admin(self, path: str) -> tuple[int, bytes]:
        return _http_get(f"http://127.0.0.1:{self.admin_port}{path}")

    def admin_call(self, method: str, path: str) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=2.0) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def proxy_url(self, agent: str) -> str:
        return f"http://127.0.0.1:{self.ports[agent]}"

    def stderr(self) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace")
        return ""

    def log_lines(self) -> list[dict[str, Any]]:
        """Access lines written so far (the gateway flushes every 0.2 s)."""
        if not self.log_path.exists():
            return []
        return [orjson.loads(line) for line in self.log_path.read_bytes().splitlines() if line]

    def wait_log(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        lines = self.log_lines()
        while len(lines) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            lines = self.log_lines()
        return lines

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(5)
        elif self.proc is not None:
            code = self.proc.returncode
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(AttributeError):
            self._stderr.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return code


class ThreadGateway:
    """A gateway ``Runtime`` on its own uvloop loop in a thread (inject clocks, resolvers)."""

    def __init__(self, policy: Policy | dict[str, Any], *, log_path: str,
                 resolver: tuple[str, int] | None = None,
                 clock: Callable[[], float] | None = None, poll_seconds: float = 1.0,
                 overlay: str | None = None, policy_path: str | None = None,
                 wall: Callable[[], float] | None = None) -> None:
        doc = policy_on_free_ports(policy)
        self.ports = {a["name"]: a["port"] for a in doc["spec"]["agents"]}
        self.policy_path = policy_path or log_path + ".policy.yaml"
        Path(self.policy_path).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        self.opts = app.Options(policy_path=self.policy_path, admin_port=0, log=log_path,
                                resolver=resolver, poll_seconds=poll_seconds, overlay=overlay,
                                drain_seconds=2.0)
        snap = state.load_snapshot(self.policy_path, app.read_overlay(overlay))
        kwargs: dict[str, Any] = {"say": lambda _t: None}
        if clock is not None:
            kwargs["clock"] = clock
        if wall is not None:
            kwargs["wall"] = wall
        self._make: Callable[[], app.Runtime] = lambda: app.Runtime(self.opts, snap, **kwargs)
        self.runtime: app.Runtime | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.log_path = log_path

    def __enter__(self) -> ThreadGateway:
        self._thread = threading.Thread(target=self._main, name="gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"gateway did not start: {self._error!r}")
        return self

    def _main(self) -> None:
        self.loop = uvloop.new_event_loop()
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self.runtime = self._make()
        await self.runtime.start()
        self._ready.set()
        await self.runtime.stopping.wait()
        await self.runtime.stop()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (a coroutine function or plain function) on the gateway's loop."""
        assert self.loop is not None

        async def wrapper() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)

    @property
    def admin_port(self) -> int:
        assert self.runtime is not None and self.runtime.admin_port is not None
        return self.runtime.admin_port

    def log_lines(self, settle: float = 5.0) -> list[dict[str, Any]]:
        """Access lines so far, after waiting (bounded) for open connections to end."""
        assert self.runtime is not None
        gateway = self.runtime.gateway
        deadline = time.monotonic() + settle
        while self.call(lambda: len(gateway.conns)) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.call(self.runtime.log.flush)
        return [orjson.loads(x) for x in Path(self.log_path).read_bytes().splitlines() if x]

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self.runtime is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.runtime.stopping.set)
        if self._thread is not None:
            self._thread.join(15)


class StaticDns:
    """A loopback UDP DNS server for tests. ``records[name]`` is a list of answers.

    An answer is a list of (address, ttl). With several answers, each query of that name and
    type takes the next one (the last repeats): first public, then private, for rebinding.
    """

    def __init__(self, records: dict[str, list[list[tuple[str, int]]]]) -> None:
        self.records = {k.rstrip(".").lower(): v for k, v in records.items()}
        self.queries: list[tuple[str, str]] = []
        self._served: dict[tuple[str, str], int] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="static-dns", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> StaticDns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def count(self, name: str) -> int:
        return sum(1 for n, _t in self.queries if n == name)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            with contextlib.suppress(Exception):
                self.sock.sendto(self._answer(data), peer)

    def _answer(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.RA
        q = query.question[0]
        name = q.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(q.rdtype)
        self.queries.append((name, rdtype))
        answers = self.records.get(name)
        if answers is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
            return bytes(reply.to_wire())
        key = (name, rdtype)
        index = min(self._served.get(key, 0), len(answers) - 1)
        self._served[key] = self._served.get(key, 0) + 1
        for address, ttl in answers[index]:
            version = ipaddress.ip_address(address).version
            if (version == 4) == (rdtype == "A") and rdtype in ("A", "AAAA"):
                reply.answer.append(dns.rrset.from_text(q.name, ttl, "IN", rdtype, address))
        return bytes(reply.to_wire())
