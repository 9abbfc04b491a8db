"""Upgrades through the gateway (issue 15): an optional ``Upgrade: h2c`` is dropped and the
request goes on in HTTP/1.1, a WebSocket upgrade is relayed (101, then frames both ways, counted
and logged), any other upgrade is refused with 400 and logged with where it wanted to go."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from corral.decide import reasons
from corral.gateway.testing import StaticDns, ThreadGateway
from corral.model import records as R
from tests.gateway.helpers import agent, make_policy, raw, request


class WsOrigin:
    """An aiohttp WebSocket echo server on its own loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._main, name="ws-origin", daemon=True)

    async def _echo(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo " + msg.data)
        return ws

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self._echo)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def _main(self) -> None:
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> WsOrigin:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture()
def ws_origin() -> Iterator[WsOrigin]:
    with WsOrigin() as origin:
        yield origin


@pytest.fixture()
def gw(tmp_path: Path, dns_server: StaticDns, ws_origin: WsOrigin,
       origin_http: ThreadingHTTPServer) -> Iterator[ThreadGateway]:
    allow = [f"allowed.test:{ws_origin.port}", f"allowed.test:{origin_http.server_address[1]}"]
    policy = make_policy(agent("a", allow=allow, allow_cidrs=["127.0.0.0/8"]))
    with ThreadGateway(policy, log_path=str(tmp_path / "access.log"),
                       resolver=("127.0.0.1", dns_server.port)) as g:
        yield g


def test_websocket_is_relayed_counted_and_logged(gw: ThreadGateway, ws_origin: WsOrigin) -> None:
    async def talk() -> list[str]:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"ws://allowed.test:{ws_origin.port}/ws",
                proxy=f"http://127.0.0.1:{gw.ports['a']}") as ws:
            got = []
            for text in ("one", "two"):
                await ws.send_str(text)
                got.append((await ws.receive(timeout=5)).data)
            return got

    assert asyncio.run(talk()) == ["echo one", "echo two"]
    [line] = gw.log_lines()
    assert (line[R.METHOD], line[R.HOST], line[R.PATH], line[R.STATUS]) == (
        "GET", "allowed.test", "/ws", 101)
    assert line[R.DECISION] == "allow" and line[R.BYTES_UP] > 0 and line[R.BYTES_DOWN] > 0


def test_optional_h2c_upgrade_is_dropped(gw: ThreadGateway,
                                         origin_http: ThreadingHTTPServer) -> None:
    url = f"http://allowed.test:{origin_http.server_address[1]}/h2c"
    status, _, body = request(gw.ports["a"], "GET", url, headers={
        "Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
        "HTTP2-Settings": "AAMAAABkAAQCAAAAAAIAAAAA"})
    assert status == 200
    seen = {k.lower() for k in json.loads(body)["headers"]}
    assert not seen & {"upgrade", "http2-settings"}


def test_other_upgrades_are_refused_and_logged_with_their_destination(
        gw: ThreadGateway, origin_http: ThreadingHTTPServer) -> None:
    port = origin_http.server_address[1]
    answer = raw(gw.ports["a"], f"GET http://allowed.test:{port}/irc HTTP/1.1\r\n"
                 f"Host: allowed.test:{port}\r\nConnection: upgrade\r\nUpgrade: irc\r\n\r\n"
                 .encode())
    assert answer.startswith(b"HTTP/1.1 400 ") and b"is not relayed" in answer
    [line] = gw.log_lines()
    assert (line[R.METHOD], line[R.HOST], line[R.PORT], line[R.PATH], line[R.REASON]) == (
        "GET", "allowed.test", port, "/irc", reasons.BAD_REQUEST)
