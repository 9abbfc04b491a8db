"""An agent spreading its upload over workers and replicas (issue 10, item 11): the configured
``bytes_out_per_hour`` and ``requests_per_minute`` are its ceiling across every worker of a
gateway and every replica (here two gateway processes with two workers each)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from corral.gateway.testing import GatewayProcess, free_ports
from tests.gateway.helpers import agent, make_policy, request
from tests.security.policy_bed import no_traceback

QUOTA = 1024 * 1024
BODY = 32 * 1024


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with Sink.lock:
            Sink.received += len(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def sink() -> Iterator[int]:
    Sink.received = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def replicas(policy: dict[str, Any], count: int = 2) -> list[GatewayProcess]:
    """``count`` gateway processes of two workers each, told they are ``count`` replicas."""
    out = []
    share = ("--limit-share", str(count)) if count > 1 else ()
    for _ in range(count):
        doc = {**policy, "spec": {**policy["spec"], "agents": [
            {**a, "port": p} for a, p in zip(policy["spec"]["agents"], free_ports(1),
                                             strict=True)]}}
        out.append(GatewayProcess(doc, extra_args=("--workers", "2", *share)))
    return out


def upload(port: int, origin: int, rounds: int) -> int:
    """POST ``rounds`` bodies, a new connection each (so the kernel spreads them over the
    workers); returns how many were accepted."""
    accepted = 0
    for _ in range(rounds):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            status, _, _ = request(0, "POST", f"http://127.0.0.1:{origin}/up",
                                   body=b"x" * BODY, sock=s)
        accepted += status == 200
    return accepted


@pytest.mark.parametrize("count", [1, 2])
def test_the_quota_is_the_ceiling_across_workers_and_replicas(sink: int, count: int) -> None:
    policy = make_policy(agent("a", allow=[f"127.0.0.1:{sink}"],
                               quota={"bytes_out_per_hour": QUOTA}))
    gws = replicas(policy, count)
    try:
        for gw in gws:
            gw.start()
        for gw in gws:  # 4x the quota is offered, spread over the workers by the kernel
            upload(gw.ports["a"], sink, 4 * QUOTA // BODY // count)
        assert Sink.received <= QUOTA
        assert Sink.received >= QUOTA // 2  # each replica used most of its part
        for gw in gws:
            no_traceback(gw)
    finally:
        for gw in gws:
            gw.stop()


def test_the_rate_is_the_ceiling_across_workers_and_replicas(sink: int) -> None:
    policy = make_policy(agent("a", allow=[f"127.0.0.1:{sink}"],
                               rate={"requests_per_minute": 20}))
    gws = replicas(policy)
    try:
        for gw in gws:
            gw.start()
        passed = 0
        for gw in gws:
            for _ in range(20):
                with socket.create_connection(("127.0.0.1", gw.ports["a"]), timeout=5) as s:
                    passed += request(0, "GET", f"http://127.0.0.1:{sink}/", sock=s)[0] == 200
        assert 10 <= passed <= 20  # a minute's worth, not 4 x 20
        for gw in gws:
            no_traceback(gw)
    finally:
        for gw in gws:
            gw.stop()
