"""Quarantine under attack (issue 10, items 7 and 8): it cuts an agent's open tunnels whatever
a reload did to the listener ports, and works on the rendered read-only overlay mount."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from corral.compile import gateway as compile_gateway
from corral.compile.gateway import OVERLAY_DIR, STATE_DIR
from corral.gateway.testing import GatewayProcess, ThreadGateway, free_ports
from corral.model.policy import Policy
from tests.gateway.helpers import agent, connect, make_policy
from tests.security.policy_bed import Echo, echo, eventually, no_traceback

__all__ = ["echo"]  # fixtures


def tunnel(port: int, echo_port: int) -> socket.socket:
    s, status, _ = connect(port, f"127.0.0.1:{echo_port}")
    assert status == 200
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    return s



def cut(s: socket.socket) -> bool:
    """The tunnel was closed by the gateway (reads EOF or reset within the timeout)."""
    s.settimeout(5)
    try:
        s.sendall(b"more")
        return s.recv(4) == b""
    except OSError:
        return True


def test_quarantine_cuts_tunnels_after_ports_shift(tmp_path: Path, echo: Echo) -> None:
    """An agent inserted before ``b`` moves ``b`` to another port; quarantining ``b`` still
    cuts the tunnel it opened before the reload."""
    entry = f"127.0.0.1:{echo.port}"
    policy = make_policy(agent("a", allow=[entry], sni_check=False),
                         agent("b", allow=[entry], sni_check=False))
    with ThreadGateway(policy, log_path=str(tmp_path / "log"), poll_seconds=0.05) as gw:
        s = tunnel(gw.ports["b"], echo.port)
        doc: dict[str, Any] = yaml.safe_load(Path(gw.policy_path).read_text())
        agents = doc["spec"]["agents"]
        moved = {**agents[1], "port": free_ports(1)[0]}
        inserted = {**agents[1], "name": "c", "selector": {"app": "c"}}  # b's old port
        doc["spec"]["agents"] = [agents[0], inserted, moved]
        Path(gw.policy_path).write_text(yaml.safe_dump(doc))
        assert gw.runtime is not None
        runtime = gw.runtime
        deadline = time.monotonic() + 10
        while "c" not in runtime.known_agents() and time.monotonic() < deadline:
            time.sleep(0.05)
        gw.call(lambda: runtime.set_quarantine("b", True))
        assert cut(s)
        s.close()


def read_only(*dirs: Path) -> tuple[str, ...]:
    """A command prefix running the gateway where ``dirs`` are read-only bind mounts, as the
    kubelet mounts a ConfigMap (root ignores file modes: only a read-only mount refuses)."""
    mounts = " && ".join(f"mount --bind {d} {d} && mount -o remount,bind,ro {d}" for d in dirs)
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'{mounts} && exec "$@"', "sh")


def configmap(directory: Path, name: str, text: str, version: int) -> None:
    """Write ``name`` the way the kubelet updates a ConfigMap volume: a new ``..vN`` dir and an
    atomic swap of the ``..data`` symlink (the file itself is a symlink into ``..data``)."""
    (directory / f"..v{version}").mkdir()
    (directory / f"..v{version}" / name).write_text(text)
    os.symlink(f"..v{version}", directory / "..data_tmp")
    os.replace(directory / "..data_tmp", directory / "..data")
    if not (directory / name).is_symlink():
        os.symlink(f"..data/{name}", directory / name)


def rendered_args(policy: dict[str, Any], dirs: dict[str, Path]) -> tuple[str, ...]:
    """The rendered container's arguments, with its mount paths moved to ``dirs``; those the
    test harness sets itself (policy file, listen address, admin port, log) are dropped."""
    spec = Policy.model_validate(policy)
    pod = compile_gateway.deployment(spec)["spec"]["template"]["spec"]
    args: list[str] = pod["containers"][0]["args"][1:]
    out: list[str] = []
    skip = {"-f", "--listen", "--admin-port", "--log", "--control-plane"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in skip:
            continue
        moved = value
        for mount, local in dirs.items():
            moved = moved.replace(mount, str(local))
        out += [flag, moved]
    return tuple(out)


def admin_put(gw: GatewayProcess, agent: str, method: str = "PUT") -> dict[str, Any]:
    status, body = gw.admin_call(method, f"/v1/quarantine/{agent}")
    assert status == 200, body
    doc: dict[str, Any] = orjson.loads(body)
    return doc


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="read-only bind mounts need root and unshare")
def test_quarantine_on_the_rendered_read_only_overlay(tmp_path: Path, echo: Echo) -> None:
    """The rendered Deployment: --overlay on a read-only ConfigMap mount, --state on an
    emptyDir. The admin API replies, applies at once, and the change survives a restart; a
    later ConfigMap change wins over it."""
    overlay, state_dir = tmp_path / "overlay", tmp_path / "state"
    overlay.mkdir()
    state_dir.mkdir()
    configmap(overlay, "overlay.json", '{"quarantined": []}', 1)
    pa, pb = free_ports(2)
    entry = f"127.0.0.1:{echo.port}"
    policy = make_policy(agent("a", allow=[entry], sni_check=False),
                         agent("b", allow=[entry], sni_check=False))
    for a, port in zip(policy["spec"]["agents"], (pa, pb), strict=True):
        a["port"] = port
    args = rendered_args(policy, {OVERLAY_DIR: overlay, STATE_DIR: state_dir})
    assert "--state" in args and "--workers" in args  # what the cluster runs, multi-worker

    def gateway() -> GatewayProcess:
        return GatewayProcess(policy, extra_args=args, wrap=read_only(overlay),
                              workdir=tmp_path)

    with gateway() as gw:
        s = tunnel(pa, echo.port)
        assert admin_put(gw, "a") == {"quarantined": ["a"], "saved": True}
        assert cut(s)
        assert connect(pa, entry)[1] == 403
        no_traceback(gw)
    with gateway() as gw:  # a restart keeps it
        assert gw.admin("/v1/quarantine")[1] == b'{"quarantined":["a"]}\n'
        assert connect(pa, entry)[1] == 403
        configmap(overlay, "overlay.json", '{"quarantined": ["b"]}', 2)  # control plane says
        assert eventually(lambda: gw.admin("/v1/quarantine")[1] == b'{"quarantined":["b"]}\n')
        no_traceback(gw)
    with gateway() as gw:  # the ConfigMap's word is the latest now
        assert gw.admin("/v1/quarantine")[1] == b'{"quarantined":["b"]}\n'
        assert admin_put(gw, "b", "DELETE") == {"quarantined": [], "saved": True}
        tunnel(pb, echo.port).close()
        no_traceback(gw)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="read-only bind mounts need root and unshare")
def test_the_admin_api_replies_when_nothing_can_be_saved(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    configmap(overlay, "overlay.json", '{"quarantined": []}', 1)
    policy = make_policy(agent("a", allow=["allowed.test"]))
    with GatewayProcess(policy, extra_args=("--overlay", str(overlay / "overlay.json")),
                        wrap=read_only(overlay), workdir=tmp_path) as gw:
        assert admin_put(gw, "a") == {"quarantined": ["a"], "saved": False}
        assert "not saved" in gw.stderr()
        no_traceback(gw)
