"""End to end on loopback with the real gateway: `corral gateway` + `corral serve` as processes.

A denied request through the gateway (tailed from its access log) and a critical Falco alert for
the same agent become one correlated incident; the control plane quarantines the agent through
the gateway's admin API, the gateway then refuses the agent's traffic with reason
``quarantined``; `corral release` lifts it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.control.conftest import falco_event


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read()) if r.headers.get_content_type() == "application/json" \
            else r.read()


def _until(what: str, check: Callable[[], Any], seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _proxy_get(port: int, url: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        host = url.split("/")[2]
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _policy(tmp_path: Path, base: int, admin: int) -> Path:
    """One agent, its gateway on free loopback ports, quarantine at critical."""
    policy = tmp_path / "corral.yaml"
    policy.write_text(f"""\
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {{name: e2e}}
spec:
  namespace: ai-workloads
  registries: [registry.example.com/agents/]
  gateway: {{base_port: {base}, admin_port: {admin}}}
  agents:
    - name: research
      selector: {{app: research-agent}}
      egress: {{allow: [api.openai.com]}}
  response:
    quarantine: {{min_severity: critical}}
""")
    return policy


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.terminate()
    for p in started:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def test_correlated_incident_quarantines_through_the_real_gateway(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    base, admin, control = _port(), _port(), _port()
    policy = _policy(tmp_path, base, admin)
    log = tmp_path / "access.log"
    token = tmp_path / "gateway-admin-token"
    token.write_text("s3cret-admin\n")  # the gateway refuses quarantine changes without it
    py = [sys.executable, "-m", "corral"]
    procs.append(subprocess.Popen(
        [*py, "gateway", "-f", str(policy), "--log", str(log), "--admin-token-file", str(token)],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "gw.err").open("wb")))
    procs.append(subprocess.Popen(
        [*py, "serve", "-f", str(policy), "--listen", f"127.0.0.1:{control}",
         "--state", str(tmp_path / "state"), "--tail", str(log),
         "--gateway-admin", f"http://127.0.0.1:{admin}", "--gateway-token-file", str(token),
         "--kube", "off"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "serve.err").open("wb")))
    gw, cp = f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{control}"
    _until("gateway ready", lambda: _get(gw + "/readyz"))
    _until("control plane up", lambda: _get(cp + "/healthz"))

    denied = _proxy_get(base, "http://paste.example/x")
    assert denied.startswith(b"HTTP/1.1 403")
    incidents = _until("the denial tailed into an incident",
                       lambda: _get(cp + "/v1/incidents")["incidents"])
    assert incidents[0]["rule"] == "gateway denial"

    alert = falco_event(rule="Read service account token", priority="Error")
    req = urllib.request.Request(cp + "/v1/falco", data=orjson.dumps(alert), method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    # Error + gateway denial within a minute -> one critical incident -> quarantine
    assert _until("the gateway quarantined the agent",
                  lambda: _get(gw + "/v1/quarantine")["quarantined"] == ["research"])
    open_incidents = _get(cp + "/v1/incidents?status=open")["incidents"]
    assert [(i["severity"], i["correlated"]) for i in open_incidents] == [("critical", True)]
    refused = _proxy_get(base, "http://api.openai.com/v1/models")
    assert refused.startswith(b"HTTP/1.1 403") and b"quarantined" in refused.lower()

    out = subprocess.run([*py, "release", "research", "--server", cp], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "released" in out.stdout
    assert _get(gw + "/v1/quarantine")["quarantined"] == []
    actions = [a["action"] for a in _get(cp + "/v1/actions")["actions"]][::-1]
    assert actions == ["quarantine", "gateway_quarantine", "release", "gateway_release"]


def _up(tmp_path: Path, policy: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "corral", "up", "-f", str(policy)],
                            cwd=tmp_path, stdout=(tmp_path / "up.out").open("ab"),
                            stderr=(tmp_path / "up.err").open("ab"))


def _authed(url: str, token_file: Path, data: bytes | None = None) -> Any:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Authorization":
                                          f"Bearer {token_file.read_text().strip()}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_up_keeps_quarantine_consistent_across_a_restart(tmp_path: Path) -> None:
    """corral up ran the gateway without an overlay: after a restart the gateway had forgotten
    a quarantine the control plane still reported. Now both read and write one overlay file."""
    base, admin = _port(), _port()
    policy = _policy(tmp_path, base, admin)
    gw = f"http://127.0.0.1:{admin}"
    tokens = tmp_path / ".corral" / "control"
    for attempt in range(2):
        proc = _up(tmp_path, policy)
        try:
            _until("gateway ready", lambda: _get(gw + "/readyz"))
            out = _until("control plane up", lambda n=attempt: [
                line for line in (tmp_path / "up.out").read_text().splitlines()
                if line.startswith("control: ")][n:])
            cp = out[0].split()[1].removesuffix("/v1/falco")
            if attempt == 0:
                alert = falco_event(rule="Read service account token", priority="Critical")
                _authed(cp + "/v1/falco", tokens / "ingest.token", orjson.dumps(alert))
                assert _until("quarantined", lambda: _get(gw + "/v1/quarantine")["quarantined"])
            # after the restart the gateway and the control plane still agree
            assert _until("the gateway quarantine", lambda: _get(gw + "/v1/quarantine")
                          ["quarantined"]) == ["research"]
            agents = _authed(cp + "/v1/agents", tokens / "admin.token")["agents"]
            assert agents[0]["quarantined"]
        finally:
            proc.terminate()
            proc.wait(30)
    assert "Traceback" not in (tmp_path / "up.err").read_text()
