"""Rate limit, byte quota, tunnel cap, slowloris, DNS rebinding and TTL caching.

Time-dependent limits run on an injected clock (the test moves it; nothing sleeps for them).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from corral.decide import reasons
from corral.gateway.ratelimit import ByteQuota, TokenBucket
from corral.gateway.resolver import ResolveError, Resolver
from corral.gateway.testing import StaticDns, ThreadGateway
from corral.model import records as R
from tests.gateway.helpers import agent, connect, https_get, make_policy, request

LOOP = ["127.0.0.0/8"]


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- pure limiters
def test_token_bucket() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock)
    assert all(bucket.take() == 0 for _ in range(60))
    assert bucket.take() == 1
    clock.now += 1.0
    assert bucket.take() == 0 and bucket.take() == 1


def test_byte_quota_window() -> None:
    clock = FakeClock(3600.0 * 10)
    quota = ByteQuota(100, clock)
    assert not quota.spend(60) and quota.retry_after() == 0
    assert quota.spend(60) and quota.retry_after() == 3600
    clock.now += 1800
    assert quota.retry_after() == 1800
    clock.now += 1800
    assert quota.retry_after() == 0 and quota.used == 0


# -- over sockets
@pytest.fixture()
def http_port(origin_http: ThreadingHTTPServer) -> int:
    return int(origin_http.server_address[1])


@pytest.fixture()
def https_port(origin_https: ThreadingHTTPServer) -> int:
    return int(origin_https.server_address[1])


def start(tmp_path: Path, dns: StaticDns, policy: dict[str, object],
          clock: FakeClock | None = None) -> ThreadGateway:
    return ThreadGateway(policy, log_path=str(tmp_path / "access.log"),
                         resolver=("127.0.0.1", dns.port), clock=clock)


def test_rate_limit_429_then_recovers(tmp_path: Path, dns_server: StaticDns,
                                      http_port: int) -> None:
    clock = FakeClock()
    policy = make_policy(agent("a", allow=[f"allowed.test:{http_port}"], allow_cidrs=LOOP,
                               rate={"requests_per_minute": 2}))
    url = f"http://allowed.test:{http_port}/"
    with start(tmp_path, dns_server, policy, clock) as gw:
        assert [request(gw.ports["a"], "GET", url)[0] for _ in range(2)] == [200, 200]
        status, headers, body = request(gw.ports["a"], "GET", url)
        assert status == 429 and headers["x-corral-reason"] == reasons.RATE_LIMITED
        assert headers["retry-after"] == "30" and b"Retry-After" in body
        clock.now += 30
        assert request(gw.ports["a"], "GET", url)[0] == 200
        line = next(x for x in gw.log_lines() if x[R.STATUS] == 429)
        assert (line[R.DECISION], line[R.REASON]) == ("deny", reasons.RATE_LIMITED)


def test_quota_429_then_next_hour(tmp_path: Path, dns_server: StaticDns, http_port: int) -> None:
    clock = FakeClock(3600.0 * 100)
    policy = make_policy(agent("a", allow=[f"allowed.test:{http_port}"], allow_cidrs=LOOP,
                               quota={"bytes_out_per_hour": 1024}))
    url = f"http://allowed.test:{http_port}/"
    with start(tmp_path, dns_server, policy, clock) as gw:
        assert request(gw.ports["a"], "POST", url, body=b"x" * 600)[0] == 200
        status, headers, _ = request(gw.ports["a"], "POST", url, body=b"x" * 600)
        assert status == 429  # its declared length would cross the quota: refused up front
        assert request(gw.ports["a"], "POST", url, body=b"x" * 100)[0] == 200
        with pytest.raises(OSError):  # an undeclared (chunked) body crossing it is cut
            request(gw.ports["a"], "POST", url, headers={"Transfer-Encoding": "chunked"},
                    body=b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n")
        status, headers, _ = request(gw.ports["a"], "GET", url)
        assert status == 429 and headers["x-corral-reason"] == reasons.QUOTA_EXCEEDED
        assert headers["retry-after"] == "3600"
        clock.now += 3600
        assert request(gw.ports["a"], "GET", url)[0] == 200


def test_quota_cuts_a_tunnel_that_overspends(tmp_path: Path, dns_server: StaticDns,
                                             https_port: int, client_tls: ssl.SSLContext) -> None:
    policy = make_policy(agent("a", allow=[f"allowed.test:{https_port}"], allow_cidrs=LOOP,
                               quota={"bytes_out_per_hour": 4096}))
    with start(tmp_path, dns_server, policy, FakeClock()) as gw:
        s, status, _ = connect(gw.ports["a"], f"allowed.test:{https_port}")
        assert status == 200
        tls = client_tls.wrap_socket(s, server_hostname="allowed.test")
        with pytest.raises(OSError):
            for _ in range(50):
                tls.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"
                            + b"x" * 1000)
                tls.recv(4096)
        tls.close()
        line = gw.log_lines()[-1]
        assert line[R.REASON] == reasons.QUOTA_EXCEEDED and line[R.BYTES_UP] > 4096


def test_tunnel_cap(tmp_path: Path, dns_server: StaticDns, https_port: int,
                    client_tls: ssl.SSLContext) -> None:
    policy = make_policy(agent("a", allow=[f"allowed.test:{https_port}"], allow_cidrs=LOOP,
                               max_tunnels=1))
    with start(tmp_path, dns_server, policy) as gw:
        first, status, _ = connect(gw.ports["a"], f"allowed.test:{https_port}")
        assert status == 200
        second, status, body = connect(gw.ports["a"], f"allowed.test:{https_port}")
        second.close()
        assert status == 429 and b"too many open tunnels" in body
        first.close()
        gw.log_lines()  # waits for the first tunnel to end
        assert https_get(gw.ports["a"], "allowed.test", https_port, client_tls)[0] == 200


def test_slowloris_is_cut_and_others_are_served(tmp_path: Path, dns_server: StaticDns,
                                                http_port: int) -> None:
    policy = make_policy(agent("a", allow=[f"allowed.test:{http_port}"], allow_cidrs=LOOP),
                         limits={"header_timeout_s": 0.3})
    with start(tmp_path, dns_server, policy) as gw:
        slow = [socket.create_connection(("127.0.0.1", gw.ports["a"]), timeout=10)
                for _ in range(5)]
        for s in slow:
            s.sendall(b"GET http://allowed.test/ HTTP/1.1\r\nX-a: ")
        assert request(gw.ports["a"], "GET", f"http://allowed.test:{http_port}/")[0] == 200
        silent = socket.create_connection(("127.0.0.1", gw.ports["a"]), timeout=10)
        for s in [*slow, silent]:
            answer = s.recv(1000)  # the gateway answers 408 and closes (bounded by timeout=10)
            assert answer.startswith(b"HTTP/1.1 408 ")
            s.close()
        assert sum(1 for x in gw.log_lines() if x[R.STATUS] == 408) == 6


def test_rebinding_name_is_dialled_as_vetted(tmp_path: Path, dns_server: StaticDns,
                                             http_port: int) -> None:
    """rebind.test answers 127.0.0.1 (allowed CIDR) then 169.254.169.254, with TTL 0."""
    policy = make_policy(agent("a", allow=[f"rebind.test:{http_port}"], allow_cidrs=LOOP))
    with start(tmp_path, dns_server, policy) as gw:
        assert request(gw.ports["a"], "GET", f"http://rebind.test:{http_port}/")[0] == 200
        status, headers, _ = request(gw.ports["a"], "GET", f"http://rebind.test:{http_port}/")
        assert status == 403 and headers["x-corral-reason"] == reasons.FORBIDDEN_ADDRESS
        first, second = gw.log_lines()
        assert first[R.RESOLVED] == "127.0.0.1" and second[R.RESOLVED] == "169.254.169.254"
        assert second[R.RULE] == "ssrf:link_local"
    # resolved once per request: one A query each, never a second lookup before dialling
    assert [t for n, t in dns_server.queries if n == "rebind.test"].count("A") == 2


def test_ttl_cache_resolves_once(tmp_path: Path, dns_server: StaticDns, http_port: int) -> None:
    policy = make_policy(agent("a", allow=[f"allowed.test:{http_port}"], allow_cidrs=LOOP))
    with start(tmp_path, dns_server, policy) as gw:
        for _ in range(3):
            assert request(gw.ports["a"], "GET", f"http://allowed.test:{http_port}/")[0] == 200
    assert dns_server.queries.count(("allowed.test", "A")) == 1


# -- resolver on its own (fake clock for TTLs)
def test_resolver_ttl_and_errors(dns_server: StaticDns) -> None:
    clock = FakeClock()

    async def main() -> None:
        r = Resolver(("127.0.0.1", dns_server.port), clock=clock, timeout=2.0)
        assert [str(a) for a in await r.resolve("allowed.test")] == ["127.0.0.1"]
        clock.now += 299
        await r.resolve("allowed.test")
        assert r.queries == 1
        clock.now += 2
        await r.resolve("allowed.test")
        assert r.queries == 2
        with pytest.raises(ResolveError, match="NXDOMAIN"):
            await r.resolve("missing.test")
        with pytest.raises(ResolveError):
            await r.resolve("missing.test")  # negative answer cached
        assert r.queries == 3
        results = await asyncio.gather(*(r.resolve("other.test") for _ in range(20)))
        assert r.queries == 4 and len({tuple(x) for x in results}) == 1
        # the first requester giving up must not cancel the lookup the others wait for
        first = asyncio.ensure_future(r.resolve("apple.test"))
        second = asyncio.ensure_future(r.resolve("apple.test"))
        await asyncio.sleep(0)
        first.cancel()
        assert [str(a) for a in await second] == ["127.0.0.1"] and r.queries == 5

    asyncio.run(main())
