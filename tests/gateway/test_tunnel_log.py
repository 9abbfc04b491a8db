"""Tunnels in the access log (issue 15): a decision line when a tunnel opens, progress lines with
the bytes since the previous line while it stays open, a close line with the last bytes and the
totals; refusals count what they sent. Real sockets and TLS; the gateway's wall clock is injected
so a tunnel stays open across midnight without waiting. The same log then goes through both
consumers, ``corral learn``'s store and the control plane's tail: each request once, each byte
once, each day what happened on it."""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from corral.control.app import ControlPlane, Settings
from corral.gateway.testing import StaticDns, ThreadGateway
from corral.learn.ingest import ingest_source
from corral.model import records as R
from corral.model.load import parse_policy
from corral.store.access import day_iso
from corral.store.aggregates import AggregateStore
from tests.gateway.helpers import agent, connect, make_policy, raw, request

LOOP = ["127.0.0.0/8"]
BEFORE_MIDNIGHT = datetime(2026, 11, 26, 23, 59, 30, tzinfo=UTC).timestamp()


class Wall:
    """The gateway's wall clock, moved by the test (the log's times and progress intervals)."""

    def __init__(self, now: float = BEFORE_MIDNIGHT) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def ports(origin_http: ThreadingHTTPServer, origin_https: ThreadingHTTPServer) -> tuple[int, int]:
    return origin_http.server_address[1], origin_https.server_address[1]


@pytest.fixture()
def wall() -> Wall:
    return Wall()


def gateway(tmp_path: Path, dns: StaticDns, ports: tuple[int, int], wall: Wall,
            **spec_gateway: Any) -> ThreadGateway:
    allow = [f"allowed.test:{p}" for p in ports]
    policy = make_policy(agent("research", allow=allow, allow_cidrs=LOOP),
                         agent("coder", mode="learn", allow=["pypi.test"], allow_cidrs=LOOP),
                         **spec_gateway)
    return ThreadGateway(policy, log_path=str(tmp_path / "access.log"),
                         resolver=("127.0.0.1", dns.port), wall=wall)


@pytest.fixture()
def gw(tmp_path: Path, dns_server: StaticDns, ports: tuple[int, int],
       wall: Wall) -> Iterator[ThreadGateway]:
    with gateway(tmp_path, dns_server, ports, wall) as g:
        yield g


def lines_now(gw: ThreadGateway) -> list[dict[str, Any]]:
    """The lines written so far, open tunnels or not."""
    return gw.log_lines(settle=0)


def progress(gw: ThreadGateway) -> None:
    """Run the progress pass now (the sweeper runs it too: either writes a due line once)."""
    assert gw.runtime is not None
    gateway = gw.runtime.gateway
    gw.call(lambda: gateway.report_progress(gateway.wall()))


class Tunnel:
    """A TLS tunnel through the gateway with one keep-alive HTTPS connection inside."""

    def __init__(self, gw: ThreadGateway, agent_name: str, port: int,
                 ctx: ssl.SSLContext) -> None:
        sock, status, _ = connect(gw.ports[agent_name], f"allowed.test:{port}")
        assert status == 200
        self.tls = ctx.wrap_socket(sock, server_hostname="allowed.test")
        self.conn = http.client.HTTPConnection("allowed.test")
        self.conn.sock = self.tls

    def get(self, body: bytes = b"") -> None:
        self.conn.request("POST", "/", body=body)
        resp = self.conn.getresponse()
        assert resp.status == 200
        resp.read()

    def close(self) -> None:
        self.tls.close()


def test_a_long_tunnel_is_logged_when_it_opens_while_open_and_when_it_closes(
        gw: ThreadGateway, wall: Wall, ports: tuple[int, int],
        client_tls: ssl.SSLContext) -> None:
    tunnel = Tunnel(gw, "research", ports[1], client_tls)
    tunnel.get(b"x" * 1000)
    [opened] = lines_now(gw)  # written while the tunnel is open, with its decision
    assert (opened[R.EVENT], opened[R.DECISION], opened[R.SNI]) == (
        R.EVENT_OPEN, "allow", "allowed.test")
    wall.now += 59
    progress(gw)
    assert len(lines_now(gw)) == 1  # not due yet (spec.gateway.log_progress_s: 60 by default)
    wall.now += 1
    progress(gw)
    tunnel.get(b"y" * 2000)
    wall.now += 60
    progress(gw)
    tunnel.get()
    wall.now += 5
    tunnel.close()
    lines = gw.log_lines()
    assert [x[R.EVENT] for x in lines] == [R.EVENT_OPEN, R.EVENT_PROGRESS, R.EVENT_PROGRESS,
                                           R.EVENT_CLOSE]
    assert {x[R.FLOW] for x in lines} == {opened[R.FLOW]}
    times = [x[R.TIME] for x in lines]
    assert times == sorted(times) and times[-1] == "2026-11-27T00:01:35.000Z"
    assert all(x[R.BYTES_UP] > 1000 for x in lines[1:3])  # each interval's POST, once
    closed = lines[-1]
    assert sum(x[R.BYTES_UP] for x in lines) == closed[R.BYTES_UP_TOTAL] > 3000
    assert sum(x[R.BYTES_DOWN] for x in lines) == closed[R.BYTES_DOWN_TOTAL] > 1000
    assert [R.counted(x)[0] for x in lines] == [1, 0, 0, 0]  # the request, once
    assert closed[R.DECISION] == "allow" and closed[R.STATUS] == 200


def test_the_sweeper_writes_progress_at_the_interval_of_spec_gateway(
        tmp_path: Path, dns_server: StaticDns, ports: tuple[int, int], wall: Wall,
        client_tls: ssl.SSLContext) -> None:
    with gateway(tmp_path, dns_server, ports, wall, log_progress_s=5) as gw:
        tunnel = Tunnel(gw, "research", ports[1], client_tls)
        tunnel.get()
        wall.now += 5
        for _ in range(100):  # the sweeper ticks every second at most
            if len(lines_now(gw)) == 2:
                break
            gw.call(lambda: asyncio.sleep(0.05))
        assert [x[R.EVENT] for x in lines_now(gw)] == [R.EVENT_OPEN, R.EVENT_PROGRESS]
        tunnel.close()


def test_plain_requests_stay_one_line_each(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    sock = socket.create_connection(("127.0.0.1", gw.ports["research"]), timeout=5)
    for _ in range(2):
        assert request(0, "GET", f"http://allowed.test:{ports[0]}/", sock=sock)[0] == 200
    sock.close()
    lines = gw.log_lines()
    assert [x[R.EVENT] for x in lines] == [R.EVENT_REQUEST] * 2
    assert all(set(x) == set(R.ACCESS_FIELDS) for x in lines)  # no tunnel totals
    assert len({x[R.FLOW] for x in lines}) == 2


def test_refusals_count_the_bytes_they_sent(gw: ThreadGateway, ports: tuple[int, int]) -> None:
    plain = raw(gw.ports["research"], f"GET http://other.test:{ports[0]}/ HTTP/1.1\r\n"
                f"Host: other.test:{ports[0]}\r\nConnection: close\r\n\r\n".encode())
    tunnel = raw(gw.ports["research"], b"CONNECT other.test:443 HTTP/1.1\r\n"
                 b"Host: other.test:443\r\n\r\n")
    assert plain.startswith(b"HTTP/1.1 403 ") and tunnel.startswith(b"HTTP/1.1 403 ")
    lines = gw.log_lines()
    assert [(x[R.EVENT], x[R.DECISION], x[R.BYTES_DOWN]) for x in lines] == [
        (R.EVENT_REQUEST, "deny", len(plain)), (R.EVENT_REQUEST, "deny", len(tunnel))]


def long_day(gw: ThreadGateway, wall: Wall, ports: tuple[int, int],
             ctx: ssl.SSLContext) -> list[dict[str, Any]]:
    """An allowed tunnel across midnight, a learn-mode (would_deny) one, a plain request."""
    allowed = Tunnel(gw, "research", ports[1], ctx)
    allowed.get(b"a" * 500)
    learned = Tunnel(gw, "coder", ports[1], ctx)
    learned.get(b"b" * 700)
    assert request(gw.ports["research"], "GET", f"http://allowed.test:{ports[0]}/")[0] == 200
    wall.now += 60  # past midnight
    progress(gw)
    allowed.get(b"c" * 300)
    learned.close()
    wall.now += 60
    progress(gw)
    allowed.get()
    allowed.close()
    return gw.log_lines()


def test_learn_and_the_control_plane_count_a_long_tunnel_once(
        gw: ThreadGateway, wall: Wall, ports: tuple[int, int], client_tls: ssl.SSLContext,
        tmp_path: Path) -> None:
    lines = long_day(gw, wall, ports, client_tls)
    events = [(x[R.AGENT], x[R.EVENT]) for x in lines if x[R.METHOD] == "CONNECT"]
    assert events.count(("research", R.EVENT_PROGRESS)) == 2
    assert ("coder", R.EVENT_PROGRESS) in events and ("coder", R.EVENT_CLOSE) in events
    tunnel = [x for x in lines if x[R.AGENT] == "research" and x[R.METHOD] == "CONNECT"]
    up, down = tunnel[-1][R.BYTES_UP_TOTAL], tunnel[-1][R.BYTES_DOWN_TOTAL]
    learned = [x for x in lines if x[R.AGENT] == "coder"][-1]
    want_total = {("research", ports[0]): (1, None, None), ("research", ports[1]): (1, up, down),
                  ("coder", ports[1]): (1, learned[R.BYTES_UP_TOTAL],
                                        learned[R.BYTES_DOWN_TOTAL])}
    # the day before holds the decisions, the day after only the bytes that moved on it
    day_after = sum(x[R.BYTES_UP] for x in tunnel if x[R.TIME] >= "2026-11-27")
    want_days = {("2026-11-26", 1, up - day_after), ("2026-11-27", 0, day_after)}

    with AggregateStore.open(tmp_path / "learn.db") as store:
        assert ingest_source(store, gw.log_path).stats.rejected == 0
        assert_counts(store, ports, want_total, want_days)

    policy = parse_policy(Path(gw.policy_path).read_text(encoding="utf-8"))[0]
    events, allowed = asyncio.run(control_plane(policy, tmp_path / "control", Path(gw.log_path)))
    with AggregateStore.open(tmp_path / "control" / "behaviour.db", readonly=True) as store:
        assert_counts(store, ports, want_total, want_days)
    assert events["coder"] == {"gateway": 1}  # one would_deny tunnel, not one per line
    assert allowed == 2  # the plain request and the allowed tunnel


async def control_plane(policy: Any, state: Path,
                        log: Path) -> tuple[dict[str, dict[str, int]], float | None]:
    """The control plane tails the log once: its events by agent, and allowed requests."""
    plane = ControlPlane(policy, Settings(state_dir=state))
    await plane.start(background=False)
    try:
        assert plane.tail(log).poll() > 0
        plane.tick()
        await plane.settle()
        events = {a["name"]: a["events"] for a in plane.agents()}
        return events, plane.metrics.registry.get_sample_value(
            "corral_control_events_total", {"source": "gateway_allow"})
    finally:
        await plane.aclose()


def assert_counts(store: AggregateStore, ports: tuple[int, int],
                  want_total: dict[tuple[str, int], tuple[int, int | None, int | None]],
                  want_days: set[tuple[str, int, int]]) -> None:
    rows = store.conn.execute(
        "SELECT agent, port, requests, bytes_up, bytes_down FROM dest_total").fetchall()
    got = {(a, p): (n, u, d) for a, p, n, u, d in rows}
    assert got.keys() == want_total.keys()
    for key, (n, u, d) in want_total.items():
        assert got[key][0] == n and (u is None or got[key][1:] == (u, d)), key
    days = store.conn.execute(
        "SELECT day, requests, bytes_up FROM dest_day WHERE agent='research' AND port=? "
        "ORDER BY day", (ports[1],)).fetchall()
    assert {(day_iso(d), n, u) for d, n, u in days} == want_days
