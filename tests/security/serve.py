"""``corral serve`` as a process for the attack tests: start it, talk to it, read its stderr.

Everything is on 127.0.0.1, every wait is bounded. ``Serve.stderr()`` is what the tests check
for tracebacks: a server must answer bad input with a status, never with a stack trace.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

POLICY = """\
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {name: sec}
spec:
  namespace: ai-workloads
  registries: [registry.example.com/agents/]
  agents:
    - name: alpha
      selector: {app: alpha-agent}
      egress: {allow: [api.openai.com]}
    - name: beta
      selector: {app: beta-agent}
      egress: {allow: [pypi.org]}
  response:
    quarantine: {min_severity: critical}
"""
INGEST_TOKEN = "ingest-0123456789abcdef"
ADMIN_TOKEN = "admin-fedcba9876543210"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def forged_alert(agent: str = "beta", **extra: Any) -> dict[str, Any]:
    """The issue's forged alert: a critical rule tagged with an agent, nothing else true."""
    return {"rule": "x", "priority": "Critical", "tags": [f"corral.agent:{agent}"],
            "time": "2026-11-26T12:01:58.123456789Z", "output": "forged", "output_fields": {},
            **extra}


class Serve:
    """One ``corral serve`` process on a free loopback port."""

    def __init__(self, tmp: Path, *extra: str, policy: str = POLICY, tokens: bool = True,
                 state: Path | None = None, port: int | None = None) -> None:
        self.tmp = tmp
        (tmp / "corral.yaml").write_text(policy)
        self.port = port or free_port()
        self.state = state or tmp / "state"
        self.scheme = "http"
        args = [sys.executable, "-m", "corral", "serve", "-f", str(tmp / "corral.yaml"),
                "--listen", f"127.0.0.1:{self.port}", "--state", str(self.state),
                "--kube", "off", *extra]
        if tokens:
            (tmp / "ingest.token").write_text(INGEST_TOKEN + "\n")
            (tmp / "admin.token").write_text(ADMIN_TOKEN + "\n")
            args += ["--ingest-token-file", str(tmp / "ingest.token"),
                     "--admin-token-file", str(tmp / "admin.token")]
        if "--tls-cert" in extra:
            self.scheme = "https"
        self.err_path = tmp / f"serve-{self.port}.err"
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=self.err_path.open("wb"))
        self.ssl: ssl.SSLContext | None = None

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def wait_up(self, seconds: float = 30) -> Serve:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.stderr()}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not come up")

    def request(self, method: str, path: str, data: bytes | None = None, *,
                token: str | None = None, timeout: float = 10) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=self.ssl))
        try:
            with opener.open(req, timeout=timeout) as r:
                return r.status, _decode(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())

    def ingest(self, alert: dict[str, Any], token: str | None = INGEST_TOKEN) -> int:
        return self.request("POST", "/v1/falco", json.dumps(alert).encode(), token=token)[0]

    def metric(self, name: str) -> float:
        _, text = self.request("GET", "/metrics")
        total = 0.0
        for line in str(text).splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def assert_no_traceback(serve: Serve) -> None:
    err = serve.stderr()
    assert "Traceback" not in err, err[-3000:]
