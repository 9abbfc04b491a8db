"""The HTTP server over real sockets: Falco's one-POST-per-alert keep-alive pattern, bad input
answered with 4xx while the server stays up, the read API and the admin calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from corral.control.app import ControlPlane
from corral.control.server import Router, ServerSettings, serve
from corral.control.sinks.base import MockSink
from tests.control.conftest import PlaneFactory, access, body, falco_event, policy, run


@asynccontextmanager
async def served(plane: ControlPlane, **kw: Any) -> AsyncIterator[str]:
    await plane.start(background=False)
    server = await serve(Router(plane, ServerSettings(**kw)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()
        await plane.aclose()


async def _raw(base: str, data: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    writer.close()
    return answer


def test_keep_alive_posts_like_falco(make_plane: PlaneFactory) -> None:
    async def go() -> None:
        plane = make_plane()
        async with served(plane) as base, aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1)) as s:
            for i in range(50):
                async with s.post(f"{base}/v1/falco", data=orjson.dumps(falco_event(proc=f"p{i}")),
                                  headers={"Content-Type": "application/json"}) as r:
                    assert r.status == 200 and await r.json() == {"accepted": 1}
            plane.tick()
            async with s.get(f"{base}/v1/incidents") as r:
                [inc] = (await r.json())["incidents"]
            assert inc["count"] == 50
            async with s.get(f"{base}/v1/incidents/{inc['id']}") as r:
                assert (await r.json())["id"] == inc["id"]
            async with s.get(f"{base}/v1/incidents/nope") as r:
                assert r.status == 404
    run(go())


def test_bad_input_gets_4xx_and_counters_and_server_stays_up(make_plane: PlaneFactory) -> None:
    async def go() -> None:
        plane = make_plane()
        async with served(plane, max_body=4096) as base, aiohttp.ClientSession() as s:
            mixed = body(falco_event(), {"rule": "x"}) + b"\n{oops\n" + body(falco_event(pod="b"))
            async with s.post(f"{base}/v1/falco", data=mixed) as r:
                assert r.status == 400
                answer = await r.json()
            assert answer["accepted"] == 2
            assert [x["reason"] for x in answer["rejected"]] == ["missing_field", "malformed_json"]
            async with s.post(f"{base}/v1/falco", data=b"x" * 5000) as r:
                assert r.status == 413
            async with s.post(f"{base}/v1/gateway", data=b"") as r:
                assert r.status == 400
            async with s.get(f"{base}/v1/falco") as r:
                assert r.status == 405
            async with s.get(f"{base}/nowhere") as r:
                assert r.status == 404
            chunked = (b"POST /v1/falco HTTP/1.1\r\nHost: x\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n"
                       + b"".join(b"400\r\n" + b"y" * 1024 + b"\r\n" for _ in range(6))
                       + b"0\r\n\r\n")
            assert (await _raw(base, chunked)).startswith(b"HTTP/1.1 413")
            assert (await _raw(base, b"NOT HTTP AT ALL\r\n\r\n")).startswith(b"HTTP/1.1 400")
            async with s.post(f"{base}/v1/gateway", data=body(access(), access("allow"))) as r:
                assert r.status == 200 and (await r.json()) == {"accepted": 2}
            async with s.get(f"{base}/metrics") as r:
                text = await r.text()
            for reason, n in (("missing_field", 1), ("malformed_json", 1), ("too_large", 2),
                              ("bad_http", 1), ("empty", 1)):
                assert f'corral_control_rejected_total{{reason="{reason}"}} {n}.0' in text
            async with s.get(f"{base}/healthz") as r:
                assert r.status == 200
            plane.tick()
            assert sum(i["count"] for i in plane.store.incidents()) == 3
    run(go())


def test_overloaded_answers_503(make_plane: PlaneFactory) -> None:
    async def go() -> None:
        pol = policy("""\
response:
  sinks:
    - {name: siem, type: webhook, url: "http://127.0.0.1:9/", send: events,
       route: {min_severity: debug}}
""")
        plane = make_plane(pol, sinks={"siem": MockSink("siem")}, max_pending=3)
        async with served(plane) as base, aiohttp.ClientSession() as s:
            one = orjson.dumps(falco_event())
            post = b"POST /v1/falco HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(one)
            # five pipelined in one segment: parsed in one pass, before the group commit runs
            answer = await _raw(base, (post + one) * 4 + post.replace(b"1.1", b"1.0") + one)
            codes = [int(part[:3]) for part in answer.split(b"HTTP/1.1 ")[1:]]
            assert codes == [200, 200, 200, 503, 503]
            plane.tick()  # drained: accepted again
            async with s.post(f"{base}/v1/falco", data=one) as r:
                assert r.status == 200
    run(go())


def test_admin_quarantine_and_release_need_the_token(make_plane: PlaneFactory,
                                                     tmp_path: Any) -> None:
    async def go() -> None:
        from corral.control.response import ResponseSettings
        overlay = tmp_path / "overlay.json"
        plane = make_plane(response=ResponseSettings(overlay_file=overlay))
        async with served(plane, admin_token="s3cret") as base, aiohttp.ClientSession() as s:
            url = f"{base}/v1/agents/research/quarantine"
            async with s.post(url) as r:
                assert r.status == 401
            auth = {"Authorization": "Bearer s3cret"}
            async with s.post(url, headers=auth) as r:
                assert r.status == 200 and (await r.json())["ok"]
            assert orjson.loads(overlay.read_bytes()) == {"quarantined": ["research"]}
            async with s.get(f"{base}/v1/agents") as r:
                assert r.status == 401  # the read API is the admin's too
            async with s.get(f"{base}/v1/agents", headers=auth) as r:
                agents = {a["name"]: a for a in (await r.json())["agents"]}
            assert agents["research"]["quarantined"] and not agents["coder"]["quarantined"]
            async with s.post(f"{base}/v1/agents/nobody/release", headers=auth) as r:
                assert r.status == 404
            async with s.post(f"{base}/v1/agents/research/release", headers=auth) as r:
                assert r.status == 200
            assert orjson.loads(overlay.read_bytes()) == {"quarantined": []}
            async with s.get(f"{base}/v1/actions?agent=research", headers=auth) as r:
                actions = [a["action"] for a in (await r.json())["actions"]]
            assert actions == ["overlay_release", "release", "overlay_quarantine", "quarantine"]
    run(go())
