"""corral's container image: the Containerfile's shape (always), the rendered Deployments' args
run by the entrypoint outside a container (always), and the image built here with podman serving
the gateway and the control plane over published ports (when podman and the cached bookworm base
are there, or CORRAL_IMAGE_TESTS=1 to make the base; see scripts/image)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from corral.compile.control import TLS_DIR as CONTROL_TLS
from corral.compile.control import TOKENS_DIR as CONTROL_TOKENS
from corral.compile.render import render_all
from corral.decide import reasons
from corral.gateway.testing import free_ports
from corral.model import records as R
from corral.model.load import parse_policy

ROOT = Path(__file__).parents[2]
CONTAINERFILE = ROOT / "Containerfile"
EXAMPLE = ROOT / "examples" / "corral.yaml"
CACHE = Path(os.environ.get("CORRAL_IMAGE_CACHE", "/var/cache/corral-image"))
BUILD_TIMEOUT_S = 900
WAIT_S = 30.0
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- the Containerfile, parsed -----------------------------------------------------------------

def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(w[0].upper(), w[1] if len(w) > 1 else "")
            for w in (line.strip().split(None, 1) for line in joined.splitlines()) if w]


def test_containerfile_is_pinned_minimal_and_non_root() -> None:
    steps = instructions(CONTAINERFILE.read_text())
    base = next(a for i, a in steps if i == "ARG" and a.startswith("BASE="))
    assert re.fullmatch(r"BASE=[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base), base
    stages = [a for i, a in steps if i == "FROM"]
    assert stages[0].startswith("${BASE}") and all(
        s.split()[0] in ("${BASE}", "python", "build") for s in stages)
    final = steps[max(n for n, (i, _) in enumerate(steps) if i == "FROM"):]
    user = [a for i, a in final if i == "USER"]
    assert user and all(int(part) > 0 for part in user[-1].split(":"))
    assert ("ENTRYPOINT", '["corral"]') in final
    assert not any(i == "ADD" for i, _ in steps)  # COPY only: no remote fetches, no tar magic
    assert all("ca" not in a.lower().split("=")[0] for i, a in final if i == "ENV")
    ignore = (ROOT / ".containerignore").read_text().split()
    assert ignore[ignore.index("*") if "*" in ignore else -1] == "*"  # everything out by default


# --- the rendered Deployments' args -------------------------------------------------------------

def rendered(policy_doc: dict[str, Any]) -> dict[str, list[str]]:
    """Container args of the gateway and control Deployments rendered from ``policy_doc``."""
    policy, _ = parse_policy(json.dumps(policy_doc))
    out: dict[str, list[str]] = {}
    for folder in ("gateway", "control"):
        for content in render_all(policy, {folder})[folder].values():
            for obj in yaml.safe_load_all(content.render()):
                if obj and obj["kind"] == "Deployment":
                    out[folder] = list(obj["spec"]["template"]["spec"]["containers"][0]["args"])
    return out


def example_with_ports(agent_ports: list[int], admin: int) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    for agent, port in zip(doc["spec"]["agents"], agent_ports, strict=True):
        agent["port"] = port
    doc["spec"]["gateway"]["admin_port"] = admin
    return doc


def ok(url: str, ctx: ssl.SSLContext | None = None, token: str | None = None) -> bool:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token
                                 else {})
    opener = NO_PROXY if ctx is None else urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
    try:
        with opener.open(req, timeout=2.0) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class ControlSecrets:
    """What the control Deployment mounts from its two Secrets (TLS and tokens), made here:
    a CA of the test's own, a serving certificate for loopback, and two distinct tokens."""

    def __init__(self, root: Path) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.tls, self.tokens = root / "tls", root / "tokens"
        for folder in (self.tls, self.tokens):
            folder.mkdir()
        cert.cert_chain_pems[0].write_to_path(str(self.tls / "tls.crt"))
        cert.private_key_pem.write_to_path(str(self.tls / "tls.key"))
        ca.cert_pem.write_to_path(str(self.tls / "ca.crt"))
        self.admin = uuid.uuid4().hex
        (self.tokens / "admin.token").write_text(self.admin + "\n")
        (self.tokens / "ingest.token").write_text(uuid.uuid4().hex + "\n")
        for path in [*self.tls.iterdir(), *self.tokens.iterdir()]:
            path.chmod(0o444)  # the image's user reads them, as defaultMode + fsGroup would
        self.ctx = ssl.create_default_context(cafile=str(self.tls / "ca.crt"))

    def mounts(self) -> dict[str, str]:
        return {str(self.tls): CONTROL_TLS, str(self.tokens): CONTROL_TOKENS}


def wait_for(check: Callable[[], bool], what: str, alive: Callable[[], str | None]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        died = alive()
        if died is not None:
            pytest.fail(f"{what} exited: {died}")
        time.sleep(0.2)
    pytest.fail(f"{what} not ready within {WAIT_S}s")


def exited(proc: subprocess.Popen[str]) -> str | None:
    if proc.poll() is None:
        return None
    return proc.stderr.read() if proc.stderr is not None else f"exit {proc.returncode}"


def proxy_get(port: int, url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"}))
    try:
        with opener.open(url, timeout=5.0) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def test_rendered_args_run_with_the_entrypoint(tmp_path: Path) -> None:
    """What the image runs (``corral`` + the rendered args), outside a container: the paths the
    Deployments mount are mapped into tmp_path and 0.0.0.0 to loopback."""
    *agents, admin, control = free_ports(4)
    doc = example_with_ports(agents, admin)
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "overlay.json").write_text('{"quarantined": []}')
    (tmp_path / "state").mkdir()
    secrets = ControlSecrets(tmp_path)
    mounts = {f"{inside}/{f.name}": str(f) for outside, inside in secrets.mounts().items()
              for f in Path(outside).iterdir()}
    mounts |= {"/etc/corral/policy.yaml": str(tmp_path / "policy.yaml"),
              "/etc/corral-overlay/overlay.json": str(tmp_path / "overlay.json"),
              "/var/lib/corral": str(tmp_path / "state"), "0.0.0.0": "127.0.0.1",
              "0.0.0.0:8765": f"127.0.0.1:{control}"}
    args = {k: [mounts.get(a, a) for a in v] for k, v in rendered(doc).items()}
    assert "--workers" in args["gateway"] and "-" in args["gateway"]  # workers, log to stdout
    outs = {k: (tmp_path / f"{k}.out").open("wb") for k in args}
    procs = [subprocess.Popen([sys.executable, "-m", "corral", *a], cwd=tmp_path,
                              stdout=outs[k], stderr=subprocess.PIPE, text=True)
             for k, a in args.items()]
    try:
        wait_for(functools.partial(ok, f"http://127.0.0.1:{admin}/readyz"), "gateway",
                 functools.partial(exited, procs[0]))
        wait_for(functools.partial(ok, f"https://127.0.0.1:{control}/v1/incidents", secrets.ctx,
                                   secrets.admin), "control plane (TLS, admin token)",
                 functools.partial(exited, procs[1]))
        status, body = proxy_get(agents[0], "http://pastebin.com/")
        assert status == 403 and b"not_in_allowlist" in body
        # The workers' access lines reach the gateway's stdout (the cluster's log pipeline).
        wait_for(lambda: denied_line((tmp_path / "gateway.out").read_text()), "access line",
                 functools.partial(exited, procs[0]))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.communicate(timeout=30)
        for out in outs.values():
            out.close()


# --- the image, built and run with podman -------------------------------------------------------

def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(ROOT / "image" / "containers.conf")}


def image_tier() -> str | None:
    """Why the image tier cannot run here, or None."""
    if os.geteuid() != 0 or shutil.which("podman") is None or shutil.which("mmdebstrap") is None:
        return "needs root, podman and mmdebstrap (Debian packages; see scripts/image)"
    wanted = os.environ.get("CORRAL_IMAGE_TESTS") == "1"
    if not (CACHE / "bookworm-slim.tar").is_file() and not wanted:
        return (f"no cached bookworm base in {CACHE}: `bash scripts/image base` once, or "
                "CORRAL_IMAGE_TESTS=1 to make it here")
    return None


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    reason = image_tier()
    if reason is not None:
        pytest.skip(reason)
    tag = f"localhost/corral:test-{uuid.uuid4().hex[:12]}"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "image"), "build"], cwd=ROOT,
                          env={**podman_env(), "CORRAL_IMAGE": tag}, capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    try:
        yield tag
    finally:  # the layers stay cached for the next build; only this run's tag goes
        subprocess.run(["podman", "rmi", tag], env=podman_env(), capture_output=True,
                       timeout=60, check=False)


def denied_line(logs: str) -> bool:
    lines = [json.loads(x) for x in logs.splitlines() if x.startswith("{")]
    return any(line.get(R.REASON) == reasons.NOT_IN_ALLOWLIST for line in lines)


class Container:
    """One ``podman run -d --read-only`` with published loopback ports, removed at the end."""

    def __init__(self, image: str, args: list[str], ports: dict[int, int],
                 volumes: dict[str, str]) -> None:
        self.name = f"corral-test-{uuid.uuid4().hex[:12]}"
        cmd = ["podman", "run", "-d", "--read-only", "--name", self.name]
        cmd += [f"-p127.0.0.1:{host}:{inside}" for inside, host in ports.items()]
        cmd += [f"-v{src}:{dst}" for src, dst in volumes.items()]
        done = subprocess.run([*cmd, image, *args], env=podman_env(), capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr

    def exited(self) -> str | None:
        state = subprocess.run(["podman", "inspect", "-f", "{{.State.Running}}", self.name],
                               env=podman_env(), capture_output=True, text=True, timeout=60,
                               check=False).stdout.strip()
        return None if state == "true" else self.logs()

    def logs(self) -> str:
        return subprocess.run(["podman", "logs", self.name], env=podman_env(),
                              capture_output=True, text=True, timeout=60, check=False).stdout

    def remove(self) -> None:
        subprocess.run(["podman", "rm", "-f", "-t", "5", self.name], env=podman_env(),
                       capture_output=True, timeout=120, check=False)


@pytest.mark.image
@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_image_serves_gateway_and_control_plane(image: str, tmp_path: Path) -> None:
    """The rendered Deployments' args, unchanged, in the built image with a read-only root."""
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    args = rendered(doc)
    policy = tmp_path / "etc"
    policy.mkdir()
    (policy / "policy.yaml").write_text(EXAMPLE.read_text())
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "overlay.json").write_text('{"quarantined": []}')
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65532, 65532)  # the image's user, as fsGroup would in the cluster
    agent, admin, control = free_ports(3)
    gw = Container(image, args["gateway"], {8080: agent, 9090: admin},
                   {str(policy): "/etc/corral:ro", str(overlay): "/etc/corral-overlay:ro"})
    try:
        secrets = ControlSecrets(tmp_path)
        cp = Container(image, args["control"], {8765: control},
                       {str(policy): "/etc/corral:ro", str(state): "/var/lib/corral",
                        **{k: f"{v}:ro" for k, v in secrets.mounts().items()}})
        try:
            wait_for(lambda: ok(f"http://127.0.0.1:{admin}/readyz"), "gateway", gw.exited)
            wait_for(lambda: ok(f"https://127.0.0.1:{control}/healthz", secrets.ctx), "control",
                     cp.exited)
            status, body = proxy_get(agent, "http://pastebin.com/")
            assert status == 403 and b"agent 'research'" in body
            wait_for(lambda: denied_line(gw.logs()), "the access line on stdout", gw.exited)
            assert ok(f"https://127.0.0.1:{control}/v1/incidents", secrets.ctx, secrets.admin)
            assert not ok(f"https://127.0.0.1:{control}/v1/incidents", secrets.ctx)
        finally:
            cp.remove()
    finally:
        gw.remove()
