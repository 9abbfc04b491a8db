"""The end-to-end world: agent -> gateway -> fake internet, in network namespaces.

One world per test session (building it takes a second or two; tests only send requests):

- ``agent`` namespace: only the gateway's address is reachable (no default route);
- ``gw`` namespace: runs ``corral gateway`` with the policy below, resolving through the test DNS;
  a "secret" server on the gateway's own loopback proves the gateway never dials itself;
- ``inet`` namespace: HTTP and HTTPS servers on addresses that look public, a private one, a
  link-local "metadata" one, dnsmasq answering the test names, and a rebinding DNS server (the
  servers are ``corral.verify.labservers``, the same ones ``corral verify --local`` uses).

Every part is real: TLS certificates come from a trustme CA, names from dnsmasq, the gateway is
the real ``corral gateway`` process. The whole world is torn down at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.model import records
from corral.verify import netns

# Addresses in the inet namespace. They look public but live only inside that namespace.
PUBLIC_A = "1.2.3.4"        # allowed.test
PUBLIC_B = "1.2.3.5"        # api.allowed.test, bücher.allowed.test
PUBLIC_DENIED = "93.184.216.34"  # denied.test
PRIVATE = "10.66.0.10"      # private.test, and where rebind.test goes after its first answer
PRIVATE_172 = "172.16.5.5"  # private172.test
METADATA = "169.254.169.254"  # meta.test
LOOKALIKE = "xn--llowed-2nf.test"  # "allowed.test" spelled with a Cyrillic a (U+0430)
IDN_ALLOWED = "xn--bcher-kva.allowed.test"  # bücher.allowed.test
DNS_PORT = 53
REBIND_PORT = 5353

SERVERS = [
    ("public-a", PUBLIC_A), ("public-b", PUBLIC_B), ("public-denied", PUBLIC_DENIED),
    ("private", PRIVATE), ("private172", PRIVATE_172), ("metadata", METADATA),
]
RECORDS = {
    "allowed.test": PUBLIC_A,
    "api.allowed.test": PUBLIC_B,
    IDN_ALLOWED: PUBLIC_B,
    "secret.allowed.test": PUBLIC_B,
    "denied.test": PUBLIC_DENIED,
    "private.test": PRIVATE,
    "private172.test": PRIVATE_172,
    "meta.test": METADATA,
    "loop.test": "127.0.0.1",
    "mapped.test": "::ffff:10.66.0.10",
    LOOKALIKE: PUBLIC_A,
}

AGENTS = {"research": 18080, "learner": 18081, "ops": 18082, "limited": 18083, "quota": 18084}
ADMIN_PORT = 19090


def policy_document() -> dict[str, Any]:
    """The e2e policy: one enforcing agent, one learning agent, one with a private CIDR."""
    research = {
        "mode": "enforce",
        "allow": ["allowed.test", "*.allowed.test", "private.test", "private172.test",
                  "meta.test", "loop.test", "*.rebind.test", "mapped.test"],
        "deny": ["secret.allowed.test"],
        "max_tunnels": 64,
    }
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": "e2e"},
        "spec": {
            "namespace": "ai-workloads",
            "gateway": {
                "base_port": AGENTS["research"],
                "admin_port": ADMIN_PORT,
                "limits": {"header_bytes": 8192, "headers": 50, "header_timeout_s": 2.0,
                           "connect_timeout_s": 3.0, "idle_timeout_s": 30.0},
            },
            "agents": [
                {"name": "research", "selector": {"app": "research"}, "egress": research},
                {"name": "learner", "selector": {"app": "learner"},
                 "egress": {"mode": "learn", "allow": ["allowed.test"]}},
                {"name": "ops", "selector": {"app": "ops"},
                 "egress": {"mode": "enforce", "allow": ["private.test", f"{PRIVATE}:80"],
                            "resolve_into": ["10.66.0.0/24"]}},
                {"name": "limited", "selector": {"app": "limited"},
                 "egress": {"mode": "enforce", "allow": ["allowed.test", "api.allowed.test"],
                            "rate": {"requests_per_minute": 5}}},
                {"name": "quota", "selector": {"app": "quota"},
                 "egress": {"mode": "enforce", "allow": ["allowed.test"],
                            "quota": {"bytes_out_per_hour": "4Ki"}}},
            ],
        },
    }


@dataclass
class World:
    """Handles the tests use: namespaces, the gateway's address, its log, the CA."""

    bed: netns.TestBed
    zones: netns.Zones
    ca_pem: Path
    log_path: Path
    dns_ip: str
    policy_path: Path
    gateway: netns.Process | None = None

    @property
    def agent(self) -> netns.Namespace:
        return self.zones.agent

    @property
    def gateway_ip(self) -> str:
        return self.zones.gateway_ip

    def port(self, agent: str = "research") -> int:
        return AGENTS[agent]

    def log_lines(self) -> list[dict[str, Any]]:
        """Every access-log record written so far (non-access lines are skipped)."""
        try:
            text = self.log_path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get(records.KIND, records.KIND_ACCESS) == records.KIND_ACCESS:
                out.append(rec)
        return out

    def wait_record(self, match: Callable[[dict[str, Any]], bool], *, after: int = 0,
                    timeout: float = 8.0) -> dict[str, Any]:
        """The first access record after index ``after`` that ``match`` accepts (bounded wait;
        the gateway buffers its log, so a line may appear a moment after the response)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines()[after:]
            found = [r for r in lines if match(r)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no access-log line matched within {timeout}s; new lines: {lines[-10:]}")
            time.sleep(0.05)

    def mark(self) -> int:
        """Current number of access records: pass as ``after`` to look only at newer ones."""
        return len(self.log_lines())


def _write_inet_config(workdir: Path, cert_pem: Path) -> Path:
    servers = []
    for label, addr in SERVERS:
        servers.append({"label": label, "addr": addr, "port": 80, "tls": False})
        servers.append({"label": label, "addr": addr, "port": 443, "tls": True})
    path = workdir / "origin.json"
    path.write_text(json.dumps({"cert": str(cert_pem), "servers": servers}))
    return path


def _write_rebind_config(workdir: Path, listen: str) -> Path:
    """Every name under rebind.test answers PUBLIC_A first and PRIVATE afterwards (TTL 0)."""
    path = workdir / "rebind-dns.json"
    path.write_text(json.dumps({"dns": {
        "addr": listen, "port": REBIND_PORT, "default": PUBLIC_A,
        "rebind": {"*.rebind.test": [PUBLIC_A, PRIVATE]}}}))
    return path


def _labservers(config: Path) -> list[str]:
    return [sys.executable, "-m", "corral.verify.labservers", str(config)]


def _wait_ready(proc: netns.Process, *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "ready" in proc.tail():
            return
        if proc.popen.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not become ready: {proc.tail()}")


def _start_inet(bed: netns.TestBed, zones: netns.Zones, workdir: Path, cert_pem: Path) -> None:
    inet = zones.inet
    bed.local_addresses(inet, [f"{a}/32" for _, a in SERVERS])
    origin = bed.start(inet, "origin", _labservers(_write_inet_config(workdir, cert_pem)))
    rebind = bed.start(inet, "rebind-dns",
                       _labservers(_write_rebind_config(workdir, zones.inet_ip)))
    dns = bed.start(inet, "dnsmasq", netns.dnsmasq_argv(
        listen=zones.inet_ip, workdir=workdir, host_records=RECORDS,
        forwards={"rebind.test": f"{zones.inet_ip}#{REBIND_PORT}"}))
    _wait_ready(origin)
    _wait_ready(rebind)
    for _, addr in SERVERS:
        inet.wait_for_port(addr, 443, proc=origin)
    deadline = time.monotonic() + 10
    while "started" not in dns.tail() and time.monotonic() < deadline:
        if dns.popen.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {dns.tail()}")
        time.sleep(0.05)


def _start_gw_secret(bed: netns.TestBed, zones: netns.Zones, workdir: Path) -> None:
    """A server on the gateway's own loopback: reaching it would be SSRF into the gateway."""
    path = workdir / "secret.json"
    path.write_text(json.dumps({"cert": "", "servers": [
        {"label": "gw-loopback", "addr": "127.0.0.1", "port": 80, "tls": False}]}))
    proc = bed.start(zones.gw, "gw-secret", _labservers(path))
    _wait_ready(proc)


def start_gateway(bed: netns.TestBed, zones: netns.Zones, policy: Path, log: Path,
                  dns_ip: str) -> netns.Process:
    argv = [sys.executable, "-m", "corral", "gateway", "-f", str(policy),
            "--listen", zones.gateway_ip, "--admin-port", str(ADMIN_PORT), "--workers", "1",
            "--log", str(log), "--resolver", f"{dns_ip}:{DNS_PORT}", "--drain-seconds", "1"]
    proc = bed.start(zones.gw, "gateway", argv)
    for port in AGENTS.values():
        zones.gw.wait_for_port(zones.gateway_ip, port, timeout=20, proc=proc)
    return proc


def install_policy(link: Path, document: dict[str, Any], version: str) -> None:
    """Write ``document`` and point ``link`` at it with an atomic symlink swap, the way a
    Kubernetes ConfigMap volume updates a mounted file."""
    target = link.with_name(f"corral-{version}.yaml")
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp = link.with_name(link.name + ".swap")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    tmp.replace(link)


def _gateway_missing() -> str | None:
    try:
        import corral.gateway.server  # noqa: F401 - only probing that the gateway exists
    except ImportError as exc:
        return f"the gateway is not built yet ({exc})"
    return None


@pytest.fixture(scope="session")
def bed_dir() -> Iterator[Path]:
    """Work folder of the e2e world; kept for inspection when CORRAL_E2E_KEEP=1."""
    path = Path(tempfile.mkdtemp(prefix="corral-e2e-"))
    yield path
    if os.environ.get("CORRAL_E2E_KEEP") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def net(bed_dir: Path) -> Iterator[World]:
    """The namespaces, servers and DNS, without the gateway."""
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed (Debian package dnsmasq-base)")
    import trustme

    netns.cleanup_stale()
    ca = trustme.CA()
    cert = ca.issue_cert("allowed.test", "*.allowed.test", "denied.test", "private.test",
                         "private172.test", "meta.test", "*.rebind.test", LOOKALIKE)
    cert_pem, ca_pem = bed_dir / "server.pem", bed_dir / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    with netns.TestBed(bed_dir / "bed") as bed:
        zones = netns.three_zones(bed)
        _start_inet(bed, zones, bed_dir, cert_pem)
        _start_gw_secret(bed, zones, bed_dir)
        yield World(bed, zones, ca_pem, bed_dir / "access.log", zones.inet_ip,
                    bed_dir / "corral.yaml")


@pytest.fixture(scope="session")
def world(net: World, bed_dir: Path) -> World:
    """``net`` plus a running ``corral gateway`` with the e2e policy."""
    missing = _gateway_missing()
    if missing:
        pytest.skip(missing)
    if net.gateway is None:
        install_policy(net.policy_path, policy_document(), "v1")
        net.gateway = start_gateway(net.bed, net.zones, net.policy_path, net.log_path,
                                    net.dns_ip)
    if net.gateway.popen.poll() is not None:
        pytest.fail(f"the gateway is not running: {net.gateway.tail()}")
    return net
