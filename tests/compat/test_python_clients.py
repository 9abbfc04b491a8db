"""Python HTTP clients through the gateway, configured only by the environment an agent builder
sets (``HTTPS_PROXY``/``HTTP_PROXY`` and a merged CA bundle in ``SSL_CERT_FILE`` /
``REQUESTS_CA_BUNDLE``): each allowed scenario works, and each denial shows the gateway's reason.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import httpx
import openai
import pytest
import requests
import websockets.asyncio.client
import websockets.exceptions
import websockets.sync.client
from openai.types.chat import ChatCompletionMessageParam

from tests.compat.conftest import ALLOWED, DENIED, Tier, why

pytestmark = pytest.mark.usefixtures("proxy_env")
CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def echo(text: str | bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(text)
    return doc


# -- urllib (stdlib)
def test_urllib(tier: Tier) -> None:
    opener = urllib.request.build_opener()
    for url in (tier.http(), tier.https()):
        with opener.open(url, timeout=10) as resp:
            assert echo(resp.read())["path"] == "/echo"


def test_urllib_denied(tier: Tier) -> None:
    opener = urllib.request.build_opener()
    with pytest.raises(urllib.error.URLError) as err:
        opener.open(tier.https(DENIED), timeout=10)
    assert str(err.value) == (
        f"<urlopen error Tunnel connection failed: 403 {why(DENIED, tier.tls)}>")
    with pytest.raises(urllib.error.HTTPError) as http_err:
        opener.open(tier.http(DENIED), timeout=10)
    assert str(http_err.value) == f"HTTP Error 403: {why(DENIED, tier.plain)}"


# -- requests
def test_requests(tier: Tier) -> None:
    with requests.Session() as s:
        assert s.get(tier.http(), timeout=10).json()["path"] == "/echo"
        resp = s.post(tier.https(), data=b"x" * 100_000, timeout=10)
        assert len(resp.json()["body"]) == 100_000


def test_requests_denied(tier: Tier) -> None:
    with pytest.raises(requests.exceptions.ProxyError) as err:
        requests.get(tier.https(DENIED), timeout=10)
    assert f"OSError(\"Tunnel connection failed: 403 {why(DENIED, tier.tls)}\")" in str(err.value)
    resp = requests.get(tier.http(DENIED), timeout=10)
    with pytest.raises(requests.exceptions.HTTPError) as http_err:
        resp.raise_for_status()
    assert str(http_err.value) == (
        f"403 Client Error: {why(DENIED, tier.plain)} for url: {tier.http(DENIED)}")
    assert resp.text == why(DENIED, tier.plain) + "\n"
    assert resp.headers["X-Corral-Reason"] == "not_in_allowlist"


# -- httpx (sync, async, HTTP/2 inside the tunnel)
def test_httpx_sync_and_h2(tier: Tier) -> None:
    with httpx.Client() as c:
        assert c.get(tier.http()).json()["http_version"] == "1.1"
        assert c.get(tier.https()).json()["http_version"] == "1.1"
    with httpx.Client(http2=True) as c:
        resp = c.get(tier.https())
        assert resp.http_version == "HTTP/2" and resp.json()["http_version"] == "2"


def test_httpx_async(tier: Tier) -> None:
    async def main() -> list[str]:
        async with httpx.AsyncClient(http2=True) as c:
            got = await asyncio.gather(*(c.get(tier.https(path=f"/echo/{i}")) for i in range(5)))
            return [r.json()["path"] for r in got]

    assert asyncio.run(main()) == [f"/echo/{i}" for i in range(5)]


def test_httpx_denied(tier: Tier) -> None:
    for http2 in (False, True):
        with httpx.Client(http2=http2) as c, pytest.raises(httpx.ProxyError) as err:
            c.get(tier.https(DENIED))
        assert str(err.value) == f"403 {why(DENIED, tier.tls)}"
    with httpx.Client() as c:
        resp = c.get(tier.http(DENIED))
    with pytest.raises(httpx.HTTPStatusError) as http_err:
        resp.raise_for_status()
    assert str(http_err.value).startswith(
        f"Client error '403 {why(DENIED, tier.plain)}' for url '{tier.http(DENIED)}'")


# -- aiohttp (trust_env=True is what makes it read the proxy variables; it reads SSL_CERT_FILE
# once, when imported, before this test set it: so the context is passed here)
def aio_session(tier: Tier) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(trust_env=True,
                                 connector=aiohttp.TCPConnector(ssl=tier.ssl_context()))


async def aio_get(tier: Tier, url: str) -> str:
    async with aio_session(tier) as s, s.get(url) as resp:
        resp.raise_for_status()
        return await resp.text()


async def aio_ws(tier: Tier, url: str) -> str:
    async with aio_session(tier) as s, s.ws_connect(url) as ws:
        await ws.send_str("hi")
        msg = await ws.receive(timeout=5)
        return str(msg.data)


def test_aiohttp(tier: Tier) -> None:
    assert echo(asyncio.run(aio_get(tier, tier.http())))["path"] == "/echo"
    assert echo(asyncio.run(aio_get(tier, tier.https())))["path"] == "/echo"
    assert asyncio.run(aio_ws(tier, f"wss://{ALLOWED}:{tier.tls}/ws")) == "echo: hi"


def test_aiohttp_plain_websocket(tier: Tier) -> None:
    assert asyncio.run(aio_ws(tier, f"ws://{ALLOWED}:{tier.plain}/ws")) == "echo: hi"


def test_aiohttp_denied(tier: Tier) -> None:
    with pytest.raises(aiohttp.ClientHttpProxyError) as err:
        asyncio.run(aio_get(tier, tier.https(DENIED)))
    assert str(err.value) == (
        f"403, message=\"{why(DENIED, tier.tls)}\", url='{tier.proxy}'")
    with pytest.raises(aiohttp.ClientResponseError) as http_err:
        asyncio.run(aio_get(tier, tier.http(DENIED)))
    assert str(http_err.value) == (
        f"403, message=\"{why(DENIED, tier.plain)}\", url='{tier.http(DENIED)}'")


# -- websockets (reads the proxy variables itself since 15.0)
def test_websockets_wss(tier: Tier) -> None:
    with websockets.sync.client.connect(f"wss://{ALLOWED}:{tier.tls}/ws", open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "echo: hi"

    async def main() -> str | bytes:
        async with websockets.asyncio.client.connect(f"wss://{ALLOWED}:{tier.tls}/ws") as ws:
            await ws.send("async")
            return await ws.recv()

    assert asyncio.run(main()) == "echo: async"


def test_websockets_plain(tier: Tier) -> None:
    with websockets.sync.client.connect(f"ws://{ALLOWED}:{tier.plain}/ws", open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "echo: hi"


def test_websockets_denied(tier: Tier) -> None:
    with pytest.raises(websockets.exceptions.InvalidProxyStatus) as err:
        websockets.sync.client.connect(f"wss://{DENIED}:{tier.tls}/ws", open_timeout=10)
    assert str(err.value) == "proxy rejected connection: HTTP 403"
    # the message drops the reason phrase; the exception's response keeps it (no body read)
    assert err.value.response.reason_phrase == why(DENIED, tier.tls)
    assert err.value.response.headers["X-Corral-Reason"] == "not_in_allowlist"


# -- openai SDK (httpx underneath), against the local stub
def chat_client(tier: Tier, host: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"https://{host}:{tier.tls}/v1", api_key="test",
                         max_retries=0, timeout=10)


def test_openai_normal_and_streaming(tier: Tier) -> None:
    with chat_client(tier, ALLOWED) as client:
        done = client.chat.completions.create(model="stub", messages=CHAT)
        assert done.choices[0].message.content == "hello from the stub"
        stream = client.chat.completions.create(model="stub", messages=CHAT,
                                                stream=True)
        words = [c.choices[0].delta.content for c in stream]
        assert words == ["hello", " from", " the", " stub"]


def test_openai_stream_arrives_unbuffered(tier: Tier) -> None:
    """The stub holds the rest of the stream until this client has the first chunk."""
    gate = tier.origin.gate
    gate.clear()
    with chat_client(tier, ALLOWED) as client:
        stream = client.chat.completions.create(model="gated", messages=CHAT,
                                                stream=True)
        words = []
        for chunk in stream:
            words.append(chunk.choices[0].delta.content)
            gate.set()
    assert words == ["hello", " from", " the", " stub"]
    assert tier.origin.gate_opened_in_time is True


def test_openai_denied(tier: Tier) -> None:
    with chat_client(tier, DENIED) as client, pytest.raises(openai.APIConnectionError) as err:
        client.chat.completions.create(model="stub", messages=CHAT)
    assert str(err.value) == "Connection error."
    assert str(err.value.__cause__) == f"403 {why(DENIED, tier.tls)}"
