"""Real local receivers that speak each sink's API and check the request shape as the real
service would (status codes included): webhook, Slack, Splunk HEC, Elasticsearch bulk, Loki,
Alertmanager over aiohttp.web, and syslog over real UDP and TCP sockets."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

HEC_TOKEN = "11111111-2222-3333-4444-555555555555"
RFC5424 = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<host>\S+) "
    rb"corral - (?P<msgid>incident|event) "
    rb"(?P<sd>\[corral@32473(?: [a-z]+=\"(?:[^\"\\\]]|\\.)*\")*\]) "
    rb"(?P<msg>\{.*\})$", re.S)


@dataclass
class Hub:
    """What arrived, per API; ``status`` forces an answer (outage simulation)."""

    got: dict[str, list[Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    status: int | None = None
    es_docs: dict[str, Any] = field(default_factory=dict)

    def add(self, api: str, item: Any) -> None:
        self.got.setdefault(api, []).append(item)


def _bad(hub: Hub, msg: str) -> web.Response:
    hub.errors.append(msg)
    return web.json_response({"error": msg}, status=400)


def app(hub: Hub) -> web.Application:
    async def forced(request: web.Request) -> web.StreamResponse | None:
        if hub.status is not None:
            await request.read()
            return web.Response(status=hub.status, text="forced")
        return None

    async def webhook(request: web.Request) -> web.StreamResponse:
        if (r := await forced(request)) is not None:
            return r
        data = await request.json()
        if not isinstance(data, list) or not all("key" in i for i in data):
            return _bad(hub, "webhook: expected a JSON array of items with a key")
        for item in data:
            hub.add("webhook", item)
        return web.Response(text="ok")

    async def slack(request: web.Request) -> web.StreamResponse:
        data = await request.json()
        if not isinstance(data.get("text"), str) or not isinstance(data.get("blocks"), list):
            return _bad(hub, "slack: expected text and blocks")
        hub.add("slack", data)
        return web.Response(text="ok")  # Slack answers a plain "ok"

    async def splunk(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Splunk {HEC_TOKEN}":
            return web.json_response({"text": "Invalid token", "code": 4}, status=403)
        text, dec, pos = (await request.read()).decode(), json.JSONDecoder(), 0
        while pos < len(text):
            env, pos = dec.raw_decode(text, pos)
            if not {"time", "event", "sourcetype"} <= set(env):
                return _bad(hub, f"splunk: envelope without time/event/sourcetype: {env}")
            hub.add("splunk", env)
        return web.json_response({"text": "Success", "code": 0})

    async def bulk(request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/x-ndjson":
            return _bad(hub, f"bulk: content type {request.content_type}")
        raw = await request.read()
        if not raw.endswith(b"\n"):
            return _bad(hub, "bulk: body must end with a newline")
        lines = raw.decode().splitlines()
        items = []
        for action_line, doc_line in zip(lines[::2], lines[1::2], strict=True):
            action = json.loads(action_line)["create"]
            doc = json.loads(doc_line)
            if action["_id"] in hub.es_docs:
                items.append({"create": {"_id": action["_id"], "status": 409}})
                continue
            hub.es_docs[action["_id"]] = doc
            hub.add("elasticsearch", (action, doc))
            items.append({"create": {"_index": action["_index"], "_id": action["_id"],
                                     "status": 201}})
        errors = any(i["create"]["status"] >= 300 for i in items)
        return web.json_response({"took": 1, "errors": errors, "items": items})

    async def loki(request: web.Request) -> web.StreamResponse:
        data = await request.json()
        for stream in data["streams"]:
            if not isinstance(stream["stream"], dict):
                return _bad(hub, "loki: stream labels must be an object")
            for ts, line in stream["values"]:
                if not (isinstance(ts, str) and ts.isdigit() and len(ts) >= 19):
                    return _bad(hub, f"loki: timestamp must be a ns string, got {ts!r}")
                hub.add("loki", (stream["stream"], json.loads(line)))
        return web.Response(status=204)

    async def alerts(request: web.Request) -> web.StreamResponse:
        data = await request.json()
        for alert in data:
            if "alertname" not in alert.get("labels", {}) or "startsAt" not in alert:
                return _bad(hub, "alertmanager: labels.alertname and startsAt required")
            hub.add("alertmanager", alert)
        return web.json_response({})

    a = web.Application()
    a.router.add_post("/hook", webhook)
    a.router.add_post("/services/T000/B000/XXXX", slack)
    a.router.add_post("/services/collector/event", splunk)
    a.router.add_post("/_bulk", bulk)
    a.router.add_post("/loki/api/v1/push", loki)
    a.router.add_post("/api/v2/alerts", alerts)
    return a


async def start_http(hub: Hub, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app(hub))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, out: list[bytes]) -> None:
        self.out = out

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.out.append(data)


async def start_syslog() -> tuple[list[bytes], list[bytes], int, int, Any]:
    """UDP and TCP syslog listeners; TCP frames are parsed with RFC 6587 octet counting."""
    udp_msgs: list[bytes] = []
    tcp_msgs: list[bytes] = []
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(udp_msgs),
                                                       local_addr=("127.0.0.1", 0))

    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = await reader.readuntil(b" ")
                tcp_msgs.append(await reader.readexactly(int(length)))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(conn, "127.0.0.1", 0)

    async def close() -> None:
        transport.close()
        server.close()

    return (udp_msgs, tcp_msgs, transport.get_extra_info("sockname")[1],
            server.sockets[0].getsockname()[1], close)
