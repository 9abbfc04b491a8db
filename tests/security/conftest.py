"""Fixtures for the attack suite: a static DNS server, a raw recording origin, and gateways run
as real subprocesses (``corral gateway``, as deployed) whose stderr must never show a traceback,
whatever the attack."""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from corral.gateway.testing import GatewayProcess, StaticDns
from tests.security.origin import RawOrigin

NAMES = ("allowed.test", "other.test")
StartGateway = Callable[..., GatewayProcess]


def assert_no_traceback(gw: GatewayProcess) -> None:
    err = gw.stderr()
    assert "Traceback" not in err, f"the gateway printed a traceback:\n{err}"


@pytest.fixture(scope="module")
def dns() -> Iterator[StaticDns]:
    with StaticDns({name: [[("127.0.0.1", 300)]] for name in NAMES}) as server:
        yield server


@pytest.fixture(scope="module")
def origin() -> Iterator[RawOrigin]:
    with RawOrigin() as server:
        yield server


@pytest.fixture(scope="module")
def start_gateway(dns: StaticDns) -> Iterator[StartGateway]:
    """Start ``corral gateway`` for a policy; at the end every one started is stopped and its
    stderr checked for tracebacks."""
    started: list[GatewayProcess] = []

    def start(policy: dict[str, Any], *extra: str) -> GatewayProcess:
        gw = GatewayProcess(policy, resolver=dns.address, extra_args=extra)
        started.append(gw)
        gw.start()
        return gw

    yield start
    for gw in started:
        try:
            assert_no_traceback(gw)
        finally:
            gw.stop()


@pytest.fixture(scope="module")
def many_fds() -> None:
    """Flood tests hold hundreds of sockets: lift this process's descriptor limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
