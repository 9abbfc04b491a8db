"""Fixtures of the compatibility tier: one real ``corral gateway`` subprocess, one hypercorn
origin (plain h1 and TLS with h2), a test CA and a loopback DNS server, shared by the whole tier.

The agent ``compat`` may reach ``allowed.test`` on the origin's two ports; ``denied.test``
resolves to the same origin but is not in its allowlist, so every client's denial is
``not_in_allowlist``. ``Env`` holds what a client process needs, set the way an agent builder
sets it (proxy variables in both cases, a merged CA bundle).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from corral.gateway.testing import GatewayProcess, StaticDns, free_ports
from tests.compat.origin import Origin, OriginApp, make_repo
from tests.gateway.helpers import agent, make_policy

ALLOWED = "allowed.test"
DENIED = "denied.test"
AGENT = "compat"
ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = Path(os.environ.get("CORRAL_NODE_MODULES",
                                   ROOT / ".cache" / "node" / "node_modules"))
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TIMEOUT = 20.0


@dataclass(frozen=True)
class Tier:
    """Everything a test needs to point a client at the gateway."""

    proxy: str
    plain: int
    tls: int
    bundle: Path
    ca_file: Path
    home: Path
    gateway: GatewayProcess
    origin: OriginApp

    def http(self, host: str = ALLOWED, path: str = "/echo") -> str:
        return f"http://{host}:{self.plain}{path}"

    def https(self, host: str = ALLOWED, path: str = "/echo") -> str:
        return f"https://{host}:{self.tls}{path}"

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment for a client process: proxy and CA variables only."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
               "LANG": "C.UTF-8", "http_proxy": self.proxy, "https_proxy": self.proxy,
               "HTTP_PROXY": self.proxy, "HTTPS_PROXY": self.proxy,
               "WS_PROXY": self.proxy, "WSS_PROXY": self.proxy,
               "SSL_CERT_FILE": str(self.bundle), "REQUESTS_CA_BUNDLE": str(self.bundle),
               "CURL_CA_BUNDLE": str(self.bundle), "GIT_SSL_CAINFO": str(self.bundle),
               "NODE_EXTRA_CA_CERTS": str(self.ca_file), "PIP_CERT": str(self.bundle),
               "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
        env.update(extra)
        return env

    def ssl_context(self) -> ssl.SSLContext:
        """A fresh client context trusting the bundle (clients set ALPN on the one they get)."""
        return ssl.create_default_context(cafile=str(self.bundle))

    def run(self, *cmd: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, env=env or self.env(), cwd=cwd or self.home,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run `bash scripts/dev setup`")
    return path


@pytest.fixture(scope="session")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    root = tmp_path_factory.mktemp("compat")
    ca = trustme.CA()
    cert = ca.issue_cert(ALLOWED, DENIED)
    certfile, keyfile, ca_file = root / "cert.pem", root / "key.pem", root / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(ca_file))
    bundle = root / "bundle.pem"
    system = SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.exists() else b""
    bundle.write_bytes(system + b"\n" + ca_file.read_bytes())
    home = root / "home"
    home.mkdir()
    plain, tls = free_ports(2)
    app = OriginApp(make_repo(root / "git"))
    policy = make_policy(agent(AGENT, allow=[f"{ALLOWED}:{plain}", f"{ALLOWED}:{tls}"],
                               allow_cidrs=["127.0.0.0/8"]))
    records = {name: [[("127.0.0.1", 300)]] for name in (ALLOWED, DENIED)}
    with (StaticDns(records) as dns,
          Origin(app, certfile=str(certfile), keyfile=str(keyfile), plain_port=plain,
                 tls_port=tls),
          GatewayProcess(policy, resolver=dns.address) as gw):
        yield Tier(proxy=gw.proxy_url(AGENT), plain=plain, tls=tls, bundle=bundle,
                   ca_file=ca_file, home=home, gateway=gw, origin=app)


def why(host: str, port: int) -> str:
    """The one-line explanation of a ``not_in_allowlist`` denial: what a client should show."""
    return (f"corral: agent '{AGENT}' may not reach {host}:{port} (reason not_in_allowlist): "
            "ask the platform team to add it to the agent's egress.allow in corral.yaml")


@pytest.fixture()
def proxy_env(tier: Tier, monkeypatch: pytest.MonkeyPatch) -> Tier:
    """This process's environment set as for a client process (in-process clients read it)."""
    for name, value in tier.env().items():
        if name not in ("PATH", "HOME", "LANG"):
            monkeypatch.setenv(name, value)
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return tier
