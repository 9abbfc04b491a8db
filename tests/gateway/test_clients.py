"""What real Python clients show for a refusal: the short explanation rides in the status line's
reason phrase, because for a refused CONNECT most clients show nothing else (issue 15, item 3).

http.client (the stdlib layer under urllib, and what many SDKs wrap) is here; every other client's
denial is asserted in tests/compat, and docs/gateway.md has the table."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.decide import reasons
from corral.gateway.testing import StaticDns, ThreadGateway
from tests.gateway.helpers import agent, make_policy

SHORT = ("403 corral: agent 'research' may not reach evil.test:{port} "
         f"(reason not_in_allowlist): {reasons.NEXT_STEP[reasons.NOT_IN_ALLOWLIST]}")


@pytest.fixture()
def gw(tmp_path: Path, dns_server: StaticDns) -> Iterator[ThreadGateway]:
    policy = make_policy(agent("research", allow=["allowed.test:443"]))
    with ThreadGateway(policy, log_path=str(tmp_path / "access.log"),
                       resolver=("127.0.0.1", dns_server.port)) as g:
        yield g


def proxy(gw: ThreadGateway) -> str:
    return f"http://127.0.0.1:{gw.ports['research']}"


def test_http_client_tunnel_shows_the_reason_phrase(gw: ThreadGateway) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", gw.ports["research"], timeout=5)
    conn.set_tunnel("evil.test", 443)
    with pytest.raises(OSError) as err:
        conn.request("GET", "/")
    conn.close()
    assert str(err.value) == "Tunnel connection failed: " + SHORT.format(port=443)
