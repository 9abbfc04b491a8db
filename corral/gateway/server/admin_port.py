"""The admin port's socket side: one request per connection, answered by ``admin.route``."""

from __future__ import annotations

import asyncio
import logging

from corral.gateway import admin

log = logging.getLogger("corral.gateway.admin")


class AdminServer:
    """The admin port: one request per connection, answered by ``admin.route``."""

    def __init__(self, backend: admin.Backend, host: str, port: int,
                 token: str | None = None) -> None:
        self._backend = backend
        self._token = token
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                reply = await self._answer(reader)
            writer.write(admin.encode_reply(reply))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("admin: error while answering")
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> admin.Reply:
        req = admin.AdminRequest()
        while not req.complete and req.error is None:
            req.feed(await reader.read(4096))
        if req.error is not None:
            return req.error
        target = req.target()
        if isinstance(target, admin.Reply):
            return target
        return await admin.route(self._backend, *target,
                                 authorized=req.authorized(self._token))
