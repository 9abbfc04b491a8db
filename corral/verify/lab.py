"""The local lab: the user's policy running for real, in network namespaces, against a fake
internet. What ``corral verify --local`` and ``corral drill --local`` run their attempts in.

Where it sits: under ``verify``/``drill``; builds on the test bed (``corral.verify.netns``):

    agent ns --veth-- gw ns --veth-- inet ns
    (probe)           corral gateway  labservers: origin on :80/:443 of every address,
                      corral serve    DNS answering every name (rebinding names too)

- the agent namespace has no route but to the gateway's address, and nftables in the gateway
  namespace admits only the agent's own listener port from it: the boundary the rendered
  NetworkPolicy draws in a cluster (agent pods reach only their gateway port);
- the gateway runs the user's policy, with one lab-only addition for the agent under test: allow
  ``*.lab.corral.test``, names the lab's DNS points at internal addresses, so the SSRF guard is
  exercised with names the agent *is* allowed to ask for (``.test`` can never be real);
- ``corral serve`` (optional) runs on the gateway namespace's loopback with the compiled Falco
  rules, tails the gateway's access log and can quarantine through the gateway's admin API.

Nothing leaves the namespaces: the inet namespace has no uplink. Needs root, iproute2 and nft.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from corral.compile import falco
from corral.model import records
from corral.model.policy import Agent, Policy
from corral.verify import netns, probe

ZONE = "lab.corral.test"
PUBLIC = "1.2.3.4"  # every name the lab's DNS does not know resolves here
METADATA = "169.254.169.254"
_PRIVATE_CANDIDATES = ("10.66.0.10", "172.31.66.10", "192.168.66.10")
CONTROL_PORT = 8765
READY_S = 20.0


class LabUnavailable(RuntimeError):
    """The lab cannot run here (not root, no iproute2/nft); the message says what is missing."""


@dataclass(frozen=True, slots=True)
class Names:
    """Lab names the agent under test may ask for, and where the lab's DNS points them."""

    public: str = f"public.{ZONE}"
    private: str = f"private.{ZONE}"
    metadata: str = f"metadata.{ZONE}"
    rebind: str = f"rebind.{ZONE}"


def private_address(agent: Agent) -> str:
    """A private address the agent's ``resolve_into`` does not open (refusing it is expected)."""
    import ipaddress  # noqa: PLC0415 - local to the one helper that needs it

    for cand in _PRIVATE_CANDIDATES:
        ip = ipaddress.ip_address(cand)
        if not any(ip in net for net in agent.egress.private_ranges):
            return cand
    raise LabUnavailable(f"agent {agent.name!r} allows every private test range")


def lab_policy(policy: Policy, agent: Agent) -> dict[str, Any]:
    """The user's policy plus ``*.lab.corral.test`` in the tested agent's allowlist."""
    doc = policy.dump()
    for a in doc["spec"]["agents"]:
        if a["name"] == agent.name:
            egress = a.setdefault("egress", {})
            egress["allow"] = [*egress.get("allow", []), f"*.{ZONE}"]
    return doc


def unavailable_reason() -> str | None:
    reason = netns.unavailable_reason()
    if reason:
        return reason
    if shutil.which("nft") is None:
        return "nftables `nft` is not installed (Debian package nftables)"
    if importlib.util.find_spec("trustme") is None:
        return "the lab's TLS origin needs trustme (pip install trustme, or corral[dev])"
    return None


def _nft_rules(iface: str, port: int) -> str:
    return (f"table inet corral_lab {{\n chain input {{\n  type filter hook input priority 0;"
            f" policy accept;\n  iifname \"{iface}\" ct state established,related accept\n"
            f"  iifname \"{iface}\" tcp dport {port} accept\n"
            f"  iifname \"{iface}\" counter drop\n }}\n}}\n")


@dataclass
class Lab:
    policy: Policy
    agent: Agent
    workdir: Path
    with_control: bool = True
    names: Names = field(default_factory=Names)
    bed: netns.TestBed = field(init=False)
    zones: netns.Zones = field(init=False)
    private: str = field(init=False)
    gateway: netns.Process | None = field(init=False, default=None)
    control: netns.Process | None = field(init=False, default=None)
    # corral serve runs authenticated, as in a cluster: checks post with the ingest token and
    # read or act with the admin token; the drill also tries without them
    ingest_token: str = field(init=False, default_factory=lambda: secrets.token_hex(16))
    admin_token: str = field(init=False, default_factory=lambda: secrets.token_hex(16))

    def __enter__(self) -> Lab:
        reason = unavailable_reason()
        if reason:
            raise LabUnavailable(reason)
        netns.cleanup_stale()
        self.private = private_address(self.agent)
        self.bed = netns.TestBed(self.workdir / "bed")
        self.bed.__enter__()
        try:
            self.zones = netns.three_zones(self.bed)
            self._start_inet()
            self._fence_agent()
            self._start_gateway()
            if self.with_control:
                self._start_control()
        except BaseException:
            self.bed.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.bed.close()

    # -- parts ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.policy.spec.listener_ports()[self.agent.name]

    @property
    def proxy(self) -> str:
        return f"http://{self.zones.gateway_ip}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.zones.gateway_ip}:{self.policy.spec.gateway.admin_port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{CONTROL_PORT}"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    @property
    def overlay(self) -> Path:
        return self.workdir / "overlay.json"

    def _cert(self) -> Path:
        import trustme  # noqa: PLC0415 - only the lab needs certificates

        ca = trustme.CA()
        cert = ca.issue_cert(f"*.{ZONE}", "*.example", "*.com", "*.org", "*.gov", "*.io")
        path = self.workdir / "origin.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(path))
        return path

    def _start_inet(self) -> None:
        inet = self.zones.inet
        self.bed.local_addresses(inet, [f"{a}/32" for a in (PUBLIC, self.private, METADATA)])
        config = {
            "cert": str(self._cert()),
            "servers": [{"label": None, "addr": "0.0.0.0", "port": 80, "tls": False},
                        {"label": None, "addr": "0.0.0.0", "port": 443, "tls": True}],
            "dns": {"addr": self.zones.inet_ip, "default": PUBLIC,
                    "names": {self.names.public: PUBLIC, self.names.private: self.private,
                              self.names.metadata: METADATA},
                    "rebind": {self.names.rebind: [PUBLIC, self.private]}},
        }
        path = self.workdir / "labservers.json"
        path.write_text(json.dumps(config))
        proc = self.bed.start(inet, "labservers",
                              [sys.executable, "-m", "corral.verify.labservers", str(path)])
        _wait_for(lambda: "ready" in proc.tail(), proc, "labservers")

    def _fence_agent(self) -> None:
        rules = self.workdir / "fence.nft"
        rules.write_text(_nft_rules("to-agent", self.port))
        self.zones.gw.run(["nft", "-f", str(rules)])

    def _start_gateway(self) -> None:
        path = self.workdir / "corral.yaml"
        path.write_text(yaml.safe_dump(lab_policy(self.policy, self.agent), sort_keys=False))
        self.overlay.write_text('{"quarantined": []}\n')
        argv = [sys.executable, "-m", "corral", "gateway", "-f", str(path),
                "--listen", self.zones.gateway_ip, "--workers", "1",
                "--log", str(self.access_log), "--resolver", f"{self.zones.inet_ip}:53",
                "--overlay", str(self.overlay), "--drain-seconds", "1"]
        self.gateway = self.bed.start(self.zones.gw, "gateway", argv)
        for port in self.policy.spec.listener_ports().values():
            self.zones.gw.wait_for_port(self.zones.gateway_ip, port, timeout=READY_S,
                                        proc=self.gateway)

    def _start_control(self) -> None:
        rules = self.workdir / "corral_rules.yaml"
        rules.write_text(falco.rules_text(self.policy))
        tokens = {"ingest": self.ingest_token, "admin": self.admin_token}
        for name, token in tokens.items():
            (self.workdir / f"{name}.token").write_text(token + "\n")
        argv = [sys.executable, "-m", "corral", "serve", "-f", str(self.workdir / "corral.yaml"),
                "--listen", f"127.0.0.1:{CONTROL_PORT}", "--state", str(self.workdir / "state"),
                "--tail", str(self.access_log), "--rules", str(rules),
                "--gateway-admin", self.admin_url, "--overlay", str(self.overlay),
                "--kube", "off", "--ingest-token-file", str(self.workdir / "ingest.token"),
                "--admin-token-file", str(self.workdir / "admin.token")]
        self.control = self.bed.start(self.zones.gw, "control", argv)
        self.zones.gw.wait_for_port("127.0.0.1", CONTROL_PORT, timeout=READY_S,
                                    proc=self.control)

    # -- what checks use -----------------------------------------------------------------------

    def probe(self, attempts: list[dict[str, Any]], *, timeout: float = 5.0,
              proxy: str | None = None) -> dict[str, probe.Result]:
        """Run the probe in the agent namespace; results by attempt id."""
        plan = {"proxy": proxy or self.proxy, "timeout": timeout, "attempts": attempts}
        budget = 10.0 + sum(float(a.get("budget", timeout * 2)) for a in attempts)
        done = self.zones.agent.run([sys.executable, "-m", "corral.verify.probe",
                                     json.dumps(plan)], timeout=budget, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"probe failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return probe.parse_results(done.stdout)

    def log_lines(self) -> list[dict[str, Any]]:
        try:
            text = self.access_log.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get(records.KIND, records.KIND_ACCESS) == \
                    records.KIND_ACCESS:
                out.append(rec)
        return out

    def wait_log(self, match: Callable[[dict[str, Any]], bool], *,
                 timeout: float = 5.0) -> dict[str, Any] | None:
        """The newest access line ``match`` accepts (the gateway buffers briefly), or None."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.log_lines() if match(r)]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def http(self, method: str, url: str, body: bytes | None = None,
             timeout: float = 5.0, token: str | None = None) -> tuple[int, Any]:
        """A call from the gateway namespace (to the control plane or the gateway admin),
        with ``token`` as its bearer credential when given."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        with self.zones.gw.entered():
            req = urllib.request.Request(url, data=body, method=method, headers=headers)
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                with opener.open(req, timeout=timeout) as resp:
                    raw = resp.read()
                    status = int(resp.status)
            except urllib.error.HTTPError as exc:
                raw, status = exc.read(), int(exc.code)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")


def _wait_for(ready: Callable[[], bool], proc: netns.Process, what: str) -> None:
    deadline = time.monotonic() + READY_S
    while not ready():
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.popen.returncode}): {proc.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {READY_S:g}s: {proc.tail()}")
        time.sleep(0.05)
