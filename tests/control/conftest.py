"""Shared fixtures for the control-plane tests: a policy with sinks, a clock tests move by hand."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from corral.control.app import ControlPlane, Settings
from corral.control.sinks.base import MockSink
from corral.model.load import parse_policy
from corral.model.policy import Policy

T = TypeVar("T")

BASE = """\
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {name: test}
spec:
  namespace: ai-workloads
  agents:
    - name: research
      selector: {app: research-agent}
      egress: {allow: [api.openai.com]}
      processes: [python3]
    - name: coder
      selector: {app: coding-agent}
      egress: {mode: learn, allow: [pypi.org]}
"""


def policy(response: str = "") -> Policy:
    text = BASE + (textwrap.indent(textwrap.dedent(response), "  ") if response else "")
    return parse_policy(text)[0]


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Backoff sleeps advance the clock instead of waiting."""
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def falco_event(rule: str = "Terminal shell in container", priority: str = "Warning", *,
                pod: str | None = "research-7d9f", ns: str = "ai-workloads",
                labels: str | None = "app:research-agent,pod-template-hash:7d9f",
                proc: str = "bash", **extra: Any) -> dict[str, Any]:
    """A Falco http_output alert as Falco 0.3x sends it."""
    fields: dict[str, Any] = {"evt.time": 1795723318123456789, "proc.name": proc,
                              "proc.cmdline": f"{proc} -i", "container.id": "a1b2c3d4e5f6",
                              "k8s.ns.name": ns}
    if pod is not None:
        fields["k8s.pod.name"] = pod
    if labels is not None:
        fields["k8s.pod.labels"] = labels
    ev = {"output": f"12:01:58.123456789: {priority} shell spawned (proc={proc} pod={pod})",
          "priority": priority, "rule": rule, "time": "2026-11-26T12:01:58.123456789Z",
          "output_fields": fields, "source": "syscall", "tags": ["container", "shell", "T1059"],
          "hostname": "node-1"}
    ev.update(extra)
    return ev


def access(decision: str = "deny", agent: str = "research", host: str = "evil.example",
           reason: str = "not_in_allowlist") -> dict[str, Any]:
    return {"time": "2026-11-26T12:01:59.000Z", "kind": "access", "agent": agent,
            "client": "10.0.0.7:40000", "method": "CONNECT", "host": host, "port": 443,
            "path": None, "decision": decision, "reason": reason, "rule": None,
            "resolved": None, "sni": None, "bytes_up": 0, "bytes_down": 0,
            "duration_ms": 0.4, "status": 403, "policy_version": "test-1"}


def body(*items: dict[str, Any]) -> bytes:
    return b"\n".join(orjson.dumps(i) for i in items)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one async scenario (no pytest-asyncio here), bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, 60))


PlaneFactory = Callable[..., ControlPlane]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_plane(tmp_path: Path, clock: Clock) -> PlaneFactory:
    """Build a control plane on tmp state with the hand-moved clock (start/aclose are the
    test's, inside its event loop)."""

    def make(pol: Policy | None = None, *, sinks: dict[str, MockSink] | None = None,
             state: Path | None = None, **settings: Any) -> ControlPlane:
        settings.setdefault("aggregates", False)  # the behaviour worker only where tested
        return ControlPlane(pol or policy(), Settings(state_dir=state or tmp_path / "state",
                                                      **settings),
                            clock=clock, sleep=clock.sleep, sinks=sinks)

    return make
