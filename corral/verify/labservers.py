"""The labs' fake internet: HTTP/HTTPS origin servers and a DNS server, in one process.

Where it sits: started inside a network namespace as ``python -m corral.verify.labservers
CONFIG.json``, by ``corral.verify.lab`` (``corral verify --local`` / ``corral drill --local``) and
by the e2e test bed (``tests/e2e/conftest.py``: the fake internet origins, the rebinding DNS
server, and the "secret" server on the gateway's own loopback). Nothing here is reachable from
outside the namespaces the labs create, and nothing here reaches out.

- Origins: one threaded HTTP or HTTPS server per configured ``(addr, port)``. Each answer is a JSON
  line naming which server answered (``origin``: its label, or the local address that answered
  when it has none; ``addr``: the local address), ``tls``, the ``sni`` and ``host`` it saw, the
  ``method``, ``path`` and request ``headers``, and how many body bytes it ``received``: a check
  can prove *which* server a request really reached (a request that reached the "private"
  address is a failed SSRF guard, whatever the status says). TLS is set up per connection in its
  own thread, so a client that never sends a ClientHello cannot stall the accept loop.
- DNS (dnspython for the wire format): A queries get the configured answer for the exact name,
  the ``default`` answer for any other name (like the internet, every name resolves), and names
  in ``rebind`` get their first address once, then the second one, always with TTL 0; a
  ``*.SUFFIX`` key in ``rebind`` does that for each name under SUFFIX separately. Other query
  types get an empty answer (and no log line), so the labs stay IPv4.

Config (JSON)::

    {"cert": PEM path or "",
     "servers": [{"label": str or null, "addr": IP, "port": int, "tls": bool}],
     "dns": null or {"addr": IP, "port": 53, "default": IP, "names": {name: IP},
                     "rebind": {name or "*.suffix": [FIRST, THEN]}}}

Prints ``ready`` once everything listens, one line per request and per DNS A query; stops on
SIGTERM.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dns.flags
import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from pydantic import BaseModel, ConfigDict, Field

_MAX_BODY = 64 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSpec(_Strict):
    label: str | None = None
    addr: str
    port: int = Field(ge=1, le=65535)
    tls: bool


class DnsSpec(_Strict):
    addr: str
    port: int = Field(default=53, ge=1, le=65535)
    default: str
    names: dict[str, str] = {}
    rebind: dict[str, tuple[str, str]] = {}


class Config(_Strict):
    cert: str = ""
    servers: list[ServerSpec] = []
    dns: DnsSpec | None = None


class Handler(BaseHTTPRequestHandler):
    """Answers every request with the JSON line described in the module docstring."""

    protocol_version = "HTTP/1.1"
    label: str | None = None

    def _drain_body(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._drain_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        got = 0
        while got < min(length, _MAX_BODY):
            chunk = self.rfile.read(min(1 << 16, length - got))
            if not chunk:
                break
            got += len(chunk)
        return got

    def _drain_chunked(self) -> int:
        """Read a chunked body to its end: left unread, it would be parsed as the next request
        and the close that follows would reset the connection before the proxy reads the
        answer."""
        got = 0
        while got <= _MAX_BODY:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                    pass
                break
            got += len(self.rfile.read(size))
            self.rfile.readline(16)  # the CRLF after the chunk
        return got

    def _answer(self) -> None:
        received = self._drain_body()
        addr = self.connection.getsockname()[0]
        body = json.dumps({
            "origin": self.label or addr,
            "addr": addr,
            "tls": isinstance(self.connection, ssl.SSLSocket),
            "sni": getattr(self.connection, "corral_sni", None),
            "host": self.headers.get("Host"),
            "path": self.path,
            "method": self.command,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "received": received,
        }).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        sys.stdout.write(f"{self.label or 'origin'} {self.address_string()} {format % args}\n")
        sys.stdout.flush()


def sni_context(cert: str) -> ssl.SSLContext:
    """Server TLS context that remembers the SNI of each connection on its socket."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert)

    def remember(sock: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.corral_sni = name

    ctx.sni_callback = remember
    return ctx


class Server(ThreadingHTTPServer):
    """Threaded server; TLS is set up per connection in its own thread."""

    daemon_threads = True
    request_queue_size = 256
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            request.settimeout(30)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


def start_origins(config: Config) -> list[Server]:
    if any(s.tls for s in config.servers) and not config.cert:
        raise ValueError("config: a server has \"tls\": true but \"cert\" is empty; "
                         "expected the path of a key-and-chain PEM file")
    ctx = sni_context(config.cert) if config.cert else None
    servers = []
    for spec in config.servers:
        handler = type(f"Handler_{spec.label or spec.port}", (Handler,), {"label": spec.label})
        httpd = Server((spec.addr, spec.port), handler)
        httpd.tls = ctx if spec.tls else None
        threading.Thread(target=httpd.serve_forever, daemon=True,
                         name=f"origin-{spec.addr}:{spec.port}").start()
        servers.append(httpd)
    return servers


def _key(name: str) -> str:
    return name.lower().rstrip(".")


class Dns:
    """Answers from the config; remembers which rebinding names were already answered."""

    def __init__(self, spec: DnsSpec) -> None:
        self.default = spec.default
        self.names = {_key(k): v for k, v in spec.names.items()}
        self.rebind = {_key(k): v for k, v in spec.rebind.items()}
        self.seen: set[str] = set()

    def _rebinding(self, name: str) -> tuple[str, str] | None:
        if name in self.rebind:
            return self.rebind[name]
        parts = name.split(".")
        for i in range(1, len(parts)):
            pair = self.rebind.get("*." + ".".join(parts[i:]))
            if pair is not None:
                return pair
        return None

    def address(self, name: str) -> str:
        pair = self._rebinding(name)
        if pair is None:
            return self.names.get(name, self.default)
        out = pair[1] if name in self.seen else pair[0]
        self.seen.add(name)
        return out

    def reply(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if query.question:
            q = query.question[0]
            name = _key(q.name.to_text())
            if q.rdtype == dns.rdatatype.A:
                addr = self.address(name)
                reply.answer.append(dns.rrset.from_text(q.name, 0, dns.rdataclass.IN,
                                                        dns.rdatatype.A, addr))
                sys.stdout.write(f"dns {name} A -> {addr}\n")
                sys.stdout.flush()
        return bytes(reply.to_wire())


def serve_dns(spec: DnsSpec) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((spec.addr, spec.port))
    server = Dns(spec)

    def loop() -> None:
        while True:
            data, peer = sock.recvfrom(4096)
            try:
                sock.sendto(server.reply(data), peer)
            except Exception as exc:  # a malformed packet is logged and dropped
                sys.stdout.write(f"dns: bad query from {peer}: {exc}\n")
                sys.stdout.flush()

    threading.Thread(target=loop, daemon=True, name="dns").start()


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        config = Config.model_validate(json.load(f))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    servers = start_origins(config)
    if config.dns is not None:
        serve_dns(config.dns)
    print("ready", flush=True)
    stop.wait()
    for s in servers:
        s.shutdown()


if __name__ == "__main__":
    main()
