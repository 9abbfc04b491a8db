"""The compatibility tier's origin: one ASGI app served by hypercorn on loopback (plain HTTP/1.1
and TLS with ALPN h2 + http/1.1), with what the real clients need behind a proxy:

- ``/echo...``: JSON of method, path, HTTP version and headers (the version proves h2 in a tunnel);
- ``/simple/``: a PEP 503 simple index with one tiny wheel (pip);
- ``/v1/chat/completions``: an OpenAI-compatible stub, SSE chunks when ``stream`` is true; for
  the model ``gated`` it sends the first chunk, then waits for ``gate`` (set by the test once
  its client has that chunk) before the rest: proof that the stream is relayed unbuffered;
- ``/ws``: a WebSocket echo;
- ``/dumb/<repo>``: a bare git repository as static files (dumb HTTP);
- ``/smart/<repo>``: the same repository through ``git http-backend`` (smart HTTP, CGI).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import socket
import subprocess
import threading
import time
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PACKAGE = "compatpkg"
WHEEL = f"{PACKAGE}-1.0-py3-none-any.whl"
REPO = "project.git"
GIT_BACKEND = "/usr/lib/git-core/git-http-backend"
SSE_WORDS = ["hello", " from", " the", " stub"]


def make_wheel() -> bytes:
    """A minimal valid pure-Python wheel (pip checks its name, version and RECORD)."""
    files = {
        f"{PACKAGE}/__init__.py": b"VALUE = 1\n",
        f"{PACKAGE}-1.0.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n".encode(),
        f"{PACKAGE}-1.0.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: corral-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{PACKAGE}-1.0.dist-info/RECORD,,")
    files[f"{PACKAGE}-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out.getvalue()


def make_repo(root: Path) -> Path:
    """``root`` with a bare repository ``REPO`` of one commit, for dumb and smart HTTP."""
    work = root / "work"
    root.mkdir(parents=True, exist_ok=True)
    env = {"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root), "PATH": "/usr/bin:/bin"}

    def git(*args: str, cwd: Path = root) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    git("init", "-q", "-b", "main", str(work))
    (work / "README").write_text("compat tier\n", encoding="utf-8")
    git("add", "README", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one", cwd=work)
    git("clone", "-q", "--bare", str(work), str(root / REPO))
    git("update-server-info", cwd=root / REPO)
    return root


async def _body(receive: Receive) -> bytes:
    out = b""
    while True:
        msg = await receive()
        out += bytes(msg.get("body", b""))
        if not msg.get("more_body"):
            return out


async def _reply(send: Send, status: int, body: bytes, content_type: str = "text/plain",
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    head = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


class OriginApp:
    """The ASGI app; ``git_root`` holds the bare repository."""

    def __init__(self, git_root: Path) -> None:
        self.git_root = git_root
        self.wheel = make_wheel()
        self.gate = threading.Event()
        self.gate_opened_in_time: bool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _websocket(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif msg["type"] == "websocket.receive":
                text = msg.get("text")
                out: dict[str, Any] = {"type": "websocket.send"}
                out.update({"text": f"echo: {text}"} if text is not None
                           else {"bytes": msg.get("bytes") or b""})
                await send(out)
            else:
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        body = await _body(receive)
        if path.startswith("/simple"):
            await self._simple(path, send)
        elif path == "/v1/chat/completions":
            await self._chat(json.loads(body or b"{}"), send)
        elif path.startswith("/dumb/"):
            await self._static(path.removeprefix("/dumb/"), send)
        elif path.startswith("/smart/"):
            await self._git_cgi(scope, body, send)
        else:
            doc = {"method": scope["method"], "path": path, "http_version": scope["http_version"],
                   "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                   "body": body.decode("latin-1")}
            await _reply(send, 200, json.dumps(doc).encode(), "application/json")

    async def _simple(self, path: str, send: Send) -> None:
        if path.rstrip("/") == "/simple":
            page = f'<a href="{PACKAGE}/">{PACKAGE}</a>'
        elif path.rstrip("/") == f"/simple/{PACKAGE}":
            page = f'<a href="/simple/{PACKAGE}/{WHEEL}">{WHEEL}</a>'
        elif path == f"/simple/{PACKAGE}/{WHEEL}":
            await _reply(send, 200, self.wheel, "application/octet-stream")
            return
        else:
            await _reply(send, 404, b"not found\n")
            return
        await _reply(send, 200, f"<html><body>{page}</body></html>".encode(), "text/html")

    async def _chat(self, req: dict[str, Any], send: Send) -> None:
        base = {"id": "chatcmpl-compat", "created": 0, "model": req.get("model", "stub")}
        if not req.get("stream"):
            doc = {**base, "object": "chat.completion", "choices": [{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "".join(SSE_WORDS)}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}}
            await _reply(send, 200, json.dumps(doc).encode(), "application/json")
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for word in SSE_WORDS:
            chunk = {**base, "object": "chat.completion.chunk", "choices": [{
                "index": 0, "finish_reason": None, "delta": {"content": word}}]}
            await send({"type": "http.response.body", "more_body": True,
                        "body": f"data: {json.dumps(chunk)}\n\n".encode()})
            if req.get("model") == "gated" and word == SSE_WORDS[0]:
                self.gate_opened_in_time = await asyncio.to_thread(self.gate.wait, 15)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _static(self, rel: str, send: Send) -> None:
        target = (self.git_root / rel).resolve()
        if not target.is_relative_to(self.git_root.resolve()) or not target.is_file():
            await _reply(send, 404, b"not found\n")
            return
        await _reply(send, 200, target.read_bytes(), "application/octet-stream")

    async def _git_cgi(self, scope: Scope, body: bytes, send: Send) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        env = {"GIT_PROJECT_ROOT": str(self.git_root), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH": "/usr/bin:/bin", "REQUEST_METHOD": scope["method"],
               "PATH_INFO": scope["path"].removeprefix("/smart"),
               "QUERY_STRING": scope["query_string"].decode(),
               "CONTENT_TYPE": headers.get("content-type", ""),
               "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
               "HTTP_GIT_PROTOCOL": headers.get("git-protocol", "")}
        proc = await asyncio.create_subprocess_exec(
            GIT_BACKEND, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(proc.communicate(body), 30)
        head, _, payload = out.partition(b"\r\n\r\n")
        status, reply = 200, []
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"status":
                status = int(value.split()[0])
            elif name:
                reply.append((name.strip().lower(), value.strip()))
        reply.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": reply})
        await send({"type": "http.response.body", "body": payload})


class Origin:
    """hypercorn serving ``OriginApp`` in a thread: ``plain_port`` (h1) and ``tls_port`` (h2)."""

    def __init__(self, app: OriginApp, *, certfile: str, keyfile: str,
                 plain_port: int, tls_port: int) -> None:
        self.app = app
        self.plain_port, self.tls_port = plain_port, tls_port
        self.config = Config()
        self.config.bind = [f"127.0.0.1:{tls_port}"]
        self.config.insecure_bind = [f"127.0.0.1:{plain_port}"]
        self.config.certfile, self.config.keyfile = certfile, keyfile
        self.config.accesslog = None
        self.config.errorlog = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="compat-origin", daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            # hypercorn types ASGI messages as TypedDicts; this app uses plain dicts
            await serve(self.app, self.config,  # type: ignore[arg-type]
                        shutdown_trigger=self._stop.wait)

        asyncio.run(run())

    def __enter__(self) -> Origin:
        self._thread.start()
        deadline = time.monotonic() + 15
        for port in (self.plain_port, self.tls_port):
            while True:
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", port), timeout=1):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"origin not listening on {port}")
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
