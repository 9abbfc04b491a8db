"""Quarantine under attack (issue 10, items 7 and 8): it cuts an agent's open tunnels whatever
a reload did to the listener ports, and works on the rendered read-only overlay mount."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import yaml

from corral.gateway.testing import ThreadGateway, free_ports
from tests.gateway.helpers import agent, connect, make_policy
from tests.security.policy_bed import Echo, echo

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
