"""Sans-io tests of the admin routes (no sockets): request parsing and routing to a backend."""

from __future__ import annotations

import asyncio

import orjson

from corral.gateway.admin import AdminRequest, Reply, encode_reply, route


class Backend:
    def __init__(self) -> None:
        self.q: set[str] = set()

    def ready(self) -> bool:
        return True

    def metrics_text(self) -> tuple[bytes, str]:
        return b"m 1\n", "text/plain"

    def quarantined(self) -> list[str]:
        return sorted(self.q)

    def known_agents(self) -> list[str]:
        return ["a", "b"]

    async def set_quarantine(self, agent: str, on: bool) -> bool:
        (self.q.add if on else self.q.discard)(agent)
        return True


def ask(backend: Backend, raw: bytes) -> Reply:
    req = AdminRequest()
    req.feed(raw)
    assert req.complete and req.error is None
    target = req.target()
    assert not isinstance(target, Reply)
    return asyncio.run(route(backend, *target))


def test_quarantine_routes() -> None:
    b = Backend()
    put = ask(b, b"PUT /v1/quarantine/a HTTP/1.1\r\n\r\n")
    assert (put.status, orjson.loads(put.body)) == (200, {"quarantined": ["a"], "saved": True})
    reply = ask(b, b"GET /v1/quarantine HTTP/1.1\r\n\r\n")
    assert orjson.loads(reply.body) == {"quarantined": ["a"]}
    assert ask(b, b"PUT /v1/quarantine/zz HTTP/1.1\r\n\r\n").status == 404
    assert ask(b, b"POST /v1/quarantine/a HTTP/1.1\r\n\r\n").status == 405
    assert ask(b, b"DELETE /v1/quarantine/a?x=1 HTTP/1.1\r\n\r\n").status == 200
    assert b.q == set()


def test_health_metrics_and_errors() -> None:
    b = Backend()
    assert ask(b, b"GET /healthz HTTP/1.1\r\n\r\n").body == b"ok\n"
    assert ask(b, b"GET /metrics HTTP/1.1\r\n\r\n").body == b"m 1\n"
    assert ask(b, b"GET /nope HTTP/1.1\r\n\r\n").status == 404
    bad = AdminRequest()
    bad.feed(b"\x00\x01 nonsense\r\n\r\n")
    assert bad.error is not None and bad.error.status == 400
    huge = AdminRequest()
    huge.feed(b"GET /" + b"a" * 9000)
    assert huge.error is not None and huge.error.status == 400
    wire = encode_reply(Reply(200, b"hi", "text/plain"))
    assert wire.startswith(b"HTTP/1.1 200 OK\r\n") and wire.endswith(b"\r\n\r\nhi")


def test_quarantine_changes_need_the_token_when_one_is_set() -> None:
    b = Backend()
    req = AdminRequest()
    req.feed(b"PUT /v1/quarantine/a HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n")
    assert not req.authorized("s3cret") and req.authorized(None)
    target = req.target()
    assert not isinstance(target, Reply)
    assert asyncio.run(route(b, *target, authorized=False)).status == 401
    assert b.q == set()
    ok = AdminRequest()
    ok.feed(b"PUT /v1/quarantine/a HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n")
    assert ok.authorized("s3cret")
    reads = AdminRequest()
    reads.feed(b"GET /v1/quarantine HTTP/1.1\r\n\r\n")
    read_target = reads.target()
    assert not isinstance(read_target, Reply)
    assert asyncio.run(route(b, *read_target, authorized=False)).status == 200
