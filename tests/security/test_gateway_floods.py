"""Exhaustion attacks against a real gateway subprocess: one agent floods connections, clients
send only CRLFs or trickle a head. Other agents and the admin port must still be served."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import pytest

from corral.decide import reasons
from corral.gateway.testing import GatewayProcess
from tests.gateway.helpers import agent, make_policy, request
from tests.security.conftest import StartGateway, assert_no_traceback
from tests.security.origin import RawOrigin

AGENT_CAP, TOTAL_CAP, RESERVE = 200, 300, 64  # RESERVE: gateway.server.listeners.AGENT_RESERVE


def policy(origin: RawOrigin, header_timeout_s: float) -> dict[str, Any]:
    allow = [f"allowed.test:{origin.port}"]
    return make_policy(*(agent(name, allow=allow, allow_cidrs=["127.0.0.0/8"])
                         for name in ("flood", "flood2", "victim")),
                       limits={"agent_connections": AGENT_CAP, "connections": TOTAL_CAP,
                               "header_timeout_s": header_timeout_s})


@pytest.fixture(scope="module")
def gw(start_gateway: StartGateway, origin: RawOrigin, many_fds: None) -> GatewayProcess:
    return start_gateway(policy(origin, 60.0))  # the flood holds its connections


@pytest.fixture(scope="module")
def slow_gw(start_gateway: StartGateway, origin: RawOrigin) -> GatewayProcess:
    return start_gateway(policy(origin, 1.0))


def hold(port: int, count: int) -> tuple[list[socket.socket], int]:
    """Open ``count`` connections that each send one CRLF; returns the ones the gateway kept
    and how many it refused with 503 connection_limit at once."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"\r\n")
        socks.append(s)
    time.sleep(0.5)
    kept, refused = [], 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(4096)
        except BlockingIOError:
            kept.append(s)
            continue
        assert data.startswith(b"HTTP/1.1 503 ") and reasons.CONNECTION_LIMIT.encode() in data
        refused += 1
        s.close()
    return kept, refused


def hammer(port: int, stop: threading.Event, seen: list[bytes]) -> None:
    """New connections from the capped agent, as fast as they are refused (bounded)."""
    for _ in range(3000):
        if stop.is_set():
            return
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                    timeout=5) as s:
            seen.append(s.recv(64)[:12])


def test_one_agent_flooding_cannot_starve_another(gw: GatewayProcess,
                                                  origin: RawOrigin) -> None:
    flood, refused = hold(gw.ports["flood"], AGENT_CAP + 30)
    flood2, refused2 = hold(gw.ports["flood2"], TOTAL_CAP - AGENT_CAP + 50)
    stop, seen = threading.Event(), []
    thread = threading.Thread(target=hammer, args=(gw.ports["flood"], stop, seen), daemon=True)
    thread.start()
    try:
        assert (len(flood), refused) == (AGENT_CAP, 30)  # the agent's cap
        assert (len(flood2), refused2) == (TOTAL_CAP - AGENT_CAP, 50)  # the process total
        url = f"http://allowed.test:{origin.port}/"
        took = []
        for _ in range(500):  # beyond the total: the victim is served from its reserve
            start = time.perf_counter()
            assert request(gw.ports["victim"], "GET", url)[0] == 200
            took.append(time.perf_counter() - start)
        assert gw.admin("/healthz")[0] == 200
    finally:
        stop.set()
        thread.join(10)
        for s in flood + flood2:
            s.close()
    took.sort()
    p99 = took[int(len(took) * 0.99) - 1]
    print(f"victim p50 {took[len(took) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"{len(seen)} flood connections refused meanwhile")
    assert p99 < 0.100, f"victim p99 {p99 * 1000:.1f} ms with one agent flooding"
    assert seen and set(seen) == {b"HTTP/1.1 503"}
    assert_no_traceback(gw)


def trickle(port: int, pieces: list[bytes]) -> bytes:
    """Send one piece every 0.1 s until the gateway answers or closes; what it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.1) as s:
        answer = b""
        for piece in pieces:
            with contextlib.suppress(OSError):
                s.sendall(piece)
            try:
                data = s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            answer += data
            if not data or answer.endswith(b"\n"):
                break
        return answer


HEAD = b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n" + b"X: 1\r\n" * 60


@pytest.mark.parametrize("pieces", [
    [b"\r\n"] * 60,  # CRLFs used to restart the header timer: held forever
    [HEAD[i * 7:(i + 1) * 7] for i in range(60)],  # one header line every 0.1 s
], ids=["crlf-only", "trickled-head"])
def test_slow_clients_meet_the_header_deadline(slow_gw: GatewayProcess,
                                               pieces: list[bytes]) -> None:
    """6 s of sending against a 1 s deadline from the first byte."""
    assert trickle(slow_gw.ports["victim"], pieces).startswith(b"HTTP/1.1 408 ")
    assert_no_traceback(slow_gw)
