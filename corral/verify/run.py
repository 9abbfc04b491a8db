"""``corral run --agent NAME -- CMD``: run a command inside the boundary the agent gets in a
cluster, on this machine.

Where it sits: under the CLI; uses iproute2, nftables and ``corral gateway`` as subprocesses.

    root namespace                                 run namespace (new, empty)
    corral gateway --listen 10.239.X.1  <--veth-->  10.239.X.2   CMD
    (the real network, real DNS)                    no default route, no DNS,
    nftables: from the veth, only the agent's       HTTP(S)_PROXY=http://10.239.X.1:PORT
    listener port; nothing is forwarded

Why its own gateway: the gateway of ``corral up`` listens on 127.0.0.1 of the root namespace,
which no other namespace can reach (loopback never crosses namespaces; DNAT to 127.0.0.1 needs
``route_localnet``, a host-wide switch). So ``corral run`` starts a gateway with the same policy,
bound only to its veth address, and the namespace's single reachable address:port is that
agent's listener: the same boundary the rendered NetworkPolicy draws, with the same identity by
port. Its access log goes to ``--log`` (``corral serve --tail FILE`` picks it up).

The command runs as the user who called sudo (``SUDO_UID``/``SUDO_GID``), or ``--user``, with
``no_new_privs``: root inside the namespace could simply leave it. Needs root to set up.

``plan`` is pure (argv lists and the nftables text, tested without root); ``Session`` runs it and
always tears everything down: the namespace (and with it the veth), the nftables table, the
gateway.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from corral.model.policy import Policy

DEFAULT_POOL = ipaddress.IPv4Network("10.239.0.0/16")
NETNS_DIR = Path("/etc/netns")
READY_S = 15.0


class RunError(RuntimeError):
    """Setting up the namespace failed; the message says which step and why."""


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return ("corral run needs root to create a network namespace, a veth link and nftables "
                "rules (run it with sudo; the command itself then runs as you, not as root)")
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables"), ("setpriv", "util-linux")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian package {pkg})"
    return None


@dataclass(frozen=True)
class Plan:
    """Everything ``corral run`` will do, as data."""

    tag: str
    agent: str
    port: int
    netns: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str
    prefix: int
    setup: tuple[tuple[str, ...], ...]
    nft: str
    gateway: tuple[str, ...]
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def proxy(self) -> str:
        return f"http://{self.host_ip}:{self.port}"

    @property
    def nft_table(self) -> str:
        return f"corral_run_{self.tag}"


def subnet_for(tag: str, pool: ipaddress.IPv4Network = DEFAULT_POOL) -> ipaddress.IPv4Network:
    """A /30 of ``pool`` picked by ``tag`` (the caller retries with another tag if taken)."""
    index = int(tag, 16) % (pool.num_addresses // 4)
    return ipaddress.IPv4Network((int(pool.network_address) + 4 * index, 30))


def nft_rules(table: str, iface: str, port: int) -> str:
    """From the veth: only the agent's listener port, and nothing forwarded anywhere."""
    return (f"table inet {table} {{\n"
            f"  chain input {{\n    type filter hook input priority 0; policy accept;\n"
            f"    iifname \"{iface}\" ct state established,related accept\n"
            f"    iifname \"{iface}\" tcp dport {port} accept\n"
            f"    iifname \"{iface}\" counter drop\n  }}\n"
            f"  chain forward {{\n    type filter hook forward priority 0; policy accept;\n"
            f"    iifname \"{iface}\" counter drop\n    oifname \"{iface}\" counter drop\n  }}\n"
            f"}}\n")


def plan(policy: Policy, agent: str, command: list[str], *, policy_path: str, log: str,
         tag: str | None = None, subnet: ipaddress.IPv4Network | None = None,
         resolver: str | None = None, uid: int | None = None, gid: int | None = None,
         python: str = sys.executable) -> Plan:
    """The exact steps for running ``command`` as ``agent`` (no side effects)."""
    if not command:
        raise RunError("nothing to run: give the command after --, e.g. corral run --agent "
                       "research -- curl https://api.openai.com")
    port = policy.spec.listener_ports()[agent]  # KeyError: caller names the agents
    tag = tag or secrets.token_hex(3)
    net = subnet or subnet_for(tag)
    host_ip, ns_ip = (str(h) for h in list(net.hosts())[:2])
    # Not "corral-...": the test bed's cleanup_stale owns that prefix and would remove it.
    netns, host_if, ns_if = f"crlrun-{tag}", f"crl{tag}h", f"crl{tag}a"
    setup = (
        ("ip", "netns", "add", netns),
        ("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", netns),
        ("ip", "addr", "add", f"{host_ip}/{net.prefixlen}", "dev", host_if),
        ("ip", "link", "set", host_if, "up"),
        ("ip", "-n", netns, "addr", "add", f"{ns_ip}/{net.prefixlen}", "dev", ns_if),
        ("ip", "-n", netns, "link", "set", ns_if, "up"),
        ("ip", "-n", netns, "link", "set", "lo", "up"),
    )
    gateway = (python, "-m", "corral", "gateway", "-f", policy_path, "--listen", host_ip,
               "--workers", "1", "--log", log, "--drain-seconds", "1",
               *(("--resolver", resolver) if resolver else ()))
    proxy = f"http://{host_ip}:{port}"
    env = {"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy,
           "https_proxy": proxy, "ALL_PROXY": proxy, "NO_PROXY": "", "no_proxy": "",
           "CORRAL_AGENT": agent}
    drop = ("setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups",
            "--no-new-privs", "--") if uid is not None and gid is not None else ()
    cmd = ("ip", "netns", "exec", netns, *drop, *command)
    return Plan(tag, agent, port, netns, host_if, ns_if, host_ip, ns_ip, net.prefixlen, setup,
                nft_rules(f"corral_run_{tag}", host_if, port), gateway, cmd, env)


def invoking_user() -> tuple[int, int] | None:
    """The user behind sudo, to run the command as; None when started by root directly."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid and uid.isdigit() and gid.isdigit():
        return int(uid), int(gid)
    return None


def _sh(argv: tuple[str, ...] | list[str], *, stdin: str | None = None) -> None:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=15,
                          check=False)
    if done.returncode != 0:
        raise RunError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


@dataclass
class Session:
    """Sets up ``plan``, runs the gateway; ``run()`` runs the command. Always tears down."""

    p: Plan
    gateway: subprocess.Popen[bytes] | None = None
    created: list[str] = field(default_factory=list)

    def __enter__(self) -> Session:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _setup(self) -> None:
        p = self.p
        _sh(p.setup[0])
        self.created.append("netns")
        for step in p.setup[1:]:
            _sh(step)
        resolv = NETNS_DIR / p.netns / "resolv.conf"
        resolv.parent.mkdir(parents=True, exist_ok=True)
        resolv.write_text("# corral run: no DNS in this namespace; names are resolved by the "
                          "gateway\nnameserver 127.0.0.1\n")
        self.created.append("resolv")
        _sh(["nft", "-f", "-"], stdin=p.nft)
        self.created.append("nft")
        self.gateway = subprocess.Popen(list(p.gateway), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
        self._wait_gateway()

    def _wait_gateway(self) -> None:
        import socket  # noqa: PLC0415 - only the readiness probe needs it

        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self.gateway is not None and self.gateway.poll() is not None:
                err = self.gateway.stderr.read().decode(errors="replace") \
                    if self.gateway.stderr else ""
                raise RunError(f"the gateway exited ({self.gateway.returncode}): {err[-1500:]}")
            with contextlib.suppress(OSError), \
                    socket.create_connection((self.p.host_ip, self.p.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RunError(f"the gateway did not listen on {self.p.host_ip}:{self.p.port} within "
                       f"{READY_S:g}s")

    def run(self, *, timeout: float | None = None) -> int:
        env = {**os.environ, **self.p.env}
        child = subprocess.Popen(list(self.p.command), env=env)
        previous = signal.signal(signal.SIGINT, lambda *_: child.send_signal(signal.SIGINT))
        try:
            return child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
            return 124
        finally:
            signal.signal(signal.SIGINT, previous)

    def close(self) -> None:
        """Undo everything created, newest first; never raises."""
        if self.gateway is not None and self.gateway.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.gateway.pid, signal.SIGTERM)
            try:
                self.gateway.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.gateway.pid, signal.SIGKILL)
                self.gateway.wait(5)
        if "nft" in self.created:
            subprocess.run(["nft", "delete", "table", "inet", self.p.nft_table],
                           capture_output=True, timeout=15, check=False)
        if "resolv" in self.created:
            shutil.rmtree(NETNS_DIR / self.p.netns, ignore_errors=True)
        if "netns" in self.created:
            _kill_namespace(self.p.netns)
        self.created.clear()


def _kill_namespace(name: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                          timeout=15, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=15, check=False)
