"""What real Python clients show for a refusal: the short explanation rides in the status line's
reason phrase, because for a refused CONNECT most clients show nothing else (issue 15, item 3).

Each test records exactly what the client surfaces; docs/gateway.md has the table."""

from __future__ import annotations

import asyncio
import http.client
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from corral.decide import reasons
from corral.gateway.testing import StaticDns, ThreadGateway
from tests.gateway.helpers import agent, make_policy

SHORT = ("403 Forbidden - corral: agent 'research' may not reach evil.test:{port} "
         f"(reason not_in_allowlist): {reasons.NEXT_STEP[reasons.NOT_IN_ALLOWLIST]}")


@pytest.fixture()
def gw(tmp_path: Path, dns_server: StaticDns) -> Iterator[ThreadGateway]:
    policy = make_policy(agent("research", allow=["allowed.test:443"]))
    with ThreadGateway(policy, log_path=str(tmp_path / "access.log"),
                       resolver=("127.0.0.1", dns_server.port)) as g:
        yield g


def proxy(gw: ThreadGateway) -> str:
    return f"http://127.0.0.1:{gw.ports['research']}"


def test_urllib_https_shows_the_reason_phrase(gw: ThreadGateway) -> None:
    handler = urllib.request.ProxyHandler({"https": proxy(gw)})
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.build_opener(handler).open("https://evil.test/", timeout=5)
    assert str(err.value.reason) == "Tunnel connection failed: " + SHORT.format(port=443)


def test_urllib_http_shows_the_reason_phrase(gw: ThreadGateway) -> None:
    handler = urllib.request.ProxyHandler({"http": proxy(gw)})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.build_opener(handler).open("http://evil.test/", timeout=5)
    assert str(err.value) == "HTTP Error " + SHORT.format(port=80).replace(" ", ": ", 1)
    assert err.value.headers["X-Corral-Reason"] == reasons.NOT_IN_ALLOWLIST


def test_http_client_tunnel_shows_the_reason_phrase(gw: ThreadGateway) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", gw.ports["research"], timeout=5)
    conn.set_tunnel("evil.test", 443)
    with pytest.raises(OSError) as err:
        conn.request("GET", "/")
    conn.close()
    assert str(err.value) == "Tunnel connection failed: " + SHORT.format(port=443)


def test_aiohttp_shows_the_reason_phrase(gw: ThreadGateway) -> None:
    async def run() -> tuple[str, str]:
        async with aiohttp.ClientSession() as session:
            try:
                await session.get("https://evil.test/", proxy=proxy(gw))
            except aiohttp.ClientHttpProxyError as exc:
                https = exc.message
            async with session.get("http://evil.test/", proxy=proxy(gw)) as resp:
                return https, f"{resp.status} {resp.reason}"

    https, http = asyncio.run(run())
    assert https == SHORT.format(port=443).split(" ", 1)[1]
    assert http == SHORT.format(port=80)
