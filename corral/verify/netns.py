"""The network-namespace test bed: isolated namespaces, veth links and processes inside them.

Where it sits: under ``verify`` (and the e2e tests). It builds small private networks out of Linux
network namespaces so that the gateway, fake "internet" servers and a DNS server can run for real
on one machine without any packet leaving it. Nothing here knows about policy or HTTP.

- ``TestBed`` is a context manager that owns everything it creates (namespaces, processes) and
  removes it on exit, also when the body raised. Namespace names carry a common prefix, the
  creating process id and a random tag, so concurrent beds never collide and ``cleanup_stale``
  can remove what a killed run left behind.
- ``Namespace`` runs commands inside one namespace (``ip netns exec``) and can ``enter`` it from
  the current thread (``setns``), so a test creates sockets that live in that namespace.
- ``three_zones`` lays out the standard topology: ``agent`` -> ``gw`` -> ``inet``, where the
  agent's only reachable address is the gateway's, and the gateway routes to the fake internet.

Needs root, iproute2 and a kernel with network namespaces; ``unavailable_reason`` says when not.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

PREFIX = "corral-"
NETNS_DIR = Path("/var/run/netns")
_CLONE_NEWNET = 0x40000000
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-[0-9a-f]+-[a-z0-9]+$")
_CMD_TIMEOUT = 10.0


class NetnsError(RuntimeError):
    """A namespace operation failed; the message names the command and what it printed."""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here (not root, no ``ip``, no permission), or None."""
    if os.geteuid() != 0:
        return "network-namespace tests need root (they create namespaces and veth links)"
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed (Debian package iproute2)"
    probe = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          timeout=_CMD_TIMEOUT, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=_CMD_TIMEOUT,
                   check=False)
    return None


def _run(argv: Sequence[str], *, timeout: float = _CMD_TIMEOUT, check: bool = True,
         input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              check=False, input=input_text)
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"{' '.join(argv)}: no answer within {timeout:g}s") from exc
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(err)}")


@dataclass(frozen=True)
class Namespace:
    """One named network namespace (``ip netns``). Cheap to copy; the bed owns its lifetime."""

    name: str
    role: str

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, timeout: float = _CMD_TIMEOUT,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside the namespace."""
        return _run(self.exec_argv(argv), timeout=timeout, check=check)

    def ip(self, *args: str) -> str:
        """``ip -n NAME args...``; returns stdout."""
        return _run(["ip", "-n", self.name, *args]).stdout

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def add_address(self, ifname: str, cidr: str) -> None:
        self.ip("addr", "add", cidr, "dev", ifname)

    def add_route(self, dest: str, via: str) -> None:
        self.ip("route", "add", dest, "via", via)

    def pids(self) -> list[int]:
        out = _run(["ip", "netns", "pids", self.name], check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move the calling thread into the namespace; sockets created inside stay there.

        Only this thread moves (``setns`` is per thread); it is moved back on exit.
        """
        with open("/proc/thread-self/ns/net", "rb") as home, \
                open(NETNS_DIR / self.name, "rb") as target:
            _setns(target.fileno())
            try:
                yield
            finally:
                _setns(home.fileno())

    def make_socket(self, family: int = socket.AF_INET,
                    kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A new socket that lives in this namespace."""
        with self.entered():
            return socket.socket(family, kind)

    def connect(self, host: str, port: int, *, timeout: float = 5.0) -> socket.socket:
        """A TCP connection made from inside this namespace."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self.make_socket(family)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    def wait_for_port(self, host: str, port: int, *, timeout: float = 10.0,
                      proc: Process | None = None) -> None:
        """Block until something accepts TCP on host:port inside the namespace (bounded)."""
        deadline = time.monotonic() + timeout
        last: OSError | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.popen.poll() is not None:
                raise NetnsError(f"{proc.name} exited ({proc.popen.returncode}) before "
                                 f"listening on {host}:{port}; {proc.tail()}")
            try:
                self.connect(host, port, timeout=1.0).close()
                return
            except OSError as exc:
                last = exc
                time.sleep(0.05)
        raise NetnsError(f"nothing listens on {host}:{port} in {self.name} after {timeout:g}s "
                         f"({last})")


Endpoint = tuple[Namespace, str, str]
"""One end of a veth link: (namespace, interface name, address/prefix)."""


@dataclass
class Process:
    """A process started by a bed inside a namespace, with its output in a file."""

    name: str
    namespace: Namespace
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, chars: int = 2000) -> str:
        """The end of the process's output, for error messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return text[-chars:] or "(no output)"

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def stop(self, *, grace: float = 3.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=grace)
        return self.popen.returncode


@dataclass
class TestBed:
    """Owns namespaces and processes; ``with TestBed(workdir) as bed:`` removes all on exit."""

    workdir: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[Namespace] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)

    __test__ = False  # not a pytest test class despite the name

    def __enter__(self) -> TestBed:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def namespace(self, role: str) -> Namespace:
        """Create a fresh namespace with loopback up; ``role`` is a short lower-case word."""
        if not re.fullmatch(r"[a-z0-9]{1,12}", role):
            raise ValueError(f"namespace role {role!r}: expected 1-12 lower-case letters/digits")
        ns = Namespace(f"{PREFIX}{os.getpid()}-{self.tag}-{role}", role)
        _run(["ip", "netns", "add", ns.name])
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def link(self, a: Endpoint, b: Endpoint) -> None:
        """A veth pair between two namespaces, addressed and up.

        Each end is ``(namespace, interface name, address/prefix)``; interface names only need to
        be unique inside their namespace (the pair is created there, never in the host's).
        """
        (a_ns, a_if, _), (b_ns, b_if, _) = a, b
        a_ns.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b_ns.name)
        for ns, ifname, cidr in (a, b):
            ns.add_address(ifname, cidr)
            ns.ip("link", "set", ifname, "up")

    def local_addresses(self, ns: Namespace, cidrs: Sequence[str]) -> None:
        """Extra local addresses on the namespace's loopback (servers that look public).

        Loopback rather than a dummy link: the dummy driver is often missing in containers.
        """
        for cidr in cidrs:
            ns.add_address("lo", cidr)

    def start(self, ns: Namespace, name: str, argv: Sequence[str], *,
              env: Mapping[str, str] | None = None, stdin: IO[Any] | int | None = None,
              ) -> Process:
        """Start ``argv`` inside ``ns`` in its own process group; output goes to a log file."""
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                ns.exec_argv(argv), stdout=out, stderr=subprocess.STDOUT,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                start_new_session=True, env=dict(env) if env is not None else None,
            )
        proc = Process(name, ns, popen, log)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        """Stop every process (newest first), then delete every namespace. Never raises."""
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()
        self.processes.clear()
        for ns in reversed(self.namespaces):
            with contextlib.suppress(Exception):
                _remove_namespace(ns.name)
        self.namespaces.clear()


def _remove_namespace(name: str) -> None:
    out = _run(["ip", "netns", "pids", name], check=False).stdout
    for pid in (int(p) for p in out.split() if p.isdigit()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _run(["ip", "netns", "del", name], check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of existing namespaces that start with ``prefix``."""
    out = _run(["ip", "netns", "list"], check=False).stdout
    names = (line.split()[0] for line in out.splitlines() if line.strip())
    return sorted(n for n in names if n.startswith(prefix))


def cleanup_stale(*, everything: bool = False) -> list[str]:
    """Remove our namespaces whose creating process is gone (or all of ours); returns names."""
    removed = []
    for name in list_namespaces():
        m = _NAME.match(name)
        owner = int(m.group(1)) if m else None
        if everything or owner is None or not _alive(owner):
            _remove_namespace(name)
            removed.append(name)
    return removed


@dataclass(frozen=True)
class Zones:
    """The standard three-namespace layout and its addresses.

    agent --(agent_net)-- gw --(uplink)-- inet. The agent has no default route and the gateway
    does not forward, so the only address the agent can reach is ``gateway_ip``.
    """

    agent: Namespace
    gw: Namespace
    inet: Namespace
    agent_ip: str
    gateway_ip: str
    gw_uplink_ip: str
    inet_ip: str


def three_zones(bed: TestBed, *, agent_net: str = "10.200.0.0/30",
                uplink_net: str = "10.201.0.0/30") -> Zones:
    """Create agent, gw and inet namespaces linked as ``Zones`` describes."""
    a_net = ipaddress.IPv4Network(agent_net)
    u_net = ipaddress.IPv4Network(uplink_net)
    gw_ip, agent_ip = (str(h) for h in list(a_net.hosts())[:2])
    up_ip, inet_ip = (str(h) for h in list(u_net.hosts())[:2])
    agent, gw, inet = bed.namespace("agent"), bed.namespace("gw"), bed.namespace("inet")
    bed.link((gw, "to-agent", f"{gw_ip}/{a_net.prefixlen}"),
             (agent, "to-gw", f"{agent_ip}/{a_net.prefixlen}"))
    bed.link((gw, "to-inet", f"{up_ip}/{u_net.prefixlen}"),
             (inet, "to-gw", f"{inet_ip}/{u_net.prefixlen}"))
    gw.sysctl("net.ipv4.ip_forward", "0")
    gw.ip("route", "add", "default", "via", inet_ip)
    return Zones(agent, gw, inet, agent_ip, gw_ip, up_ip, inet_ip)


def dnsmasq_argv(*, listen: str, workdir: Path, host_records: Mapping[str, str],
                 forwards: Mapping[str, str] | None = None, port: int = 53) -> list[str]:
    """Arguments for a foreground dnsmasq that answers only the given names.

    ``host_records`` maps a name to one address (exact name only); ``forwards`` maps a domain to
    ``ip#port`` of another server (e.g. a rebinding server). No upstream, no /etc/hosts, no cache:
    every answer comes from these records, every query is answered afresh.
    """
    argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
            "--bind-interfaces", f"--listen-address={listen}", f"--port={port}",
            "--cache-size=0", "--user=root", "--log-facility=-",
            f"--pid-file={workdir / 'dnsmasq.pid'}"]
    argv += [f"--host-record={name},{addr}" for name, addr in host_records.items()]
    argv += [f"--server=/{dom}/{to}" for dom, to in (forwards or {}).items()]
    return argv
