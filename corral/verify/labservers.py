"""The lab's fake internet: an HTTP/HTTPS origin and a DNS server, in one process.

Where it sits: ``corral.verify.lab`` starts it inside the lab's ``inet`` network namespace as
``python -m corral.verify.labservers CONFIG.json``. Nothing here is reachable from outside the
namespaces the lab creates, and nothing here reaches out.

- Origin: HTTP on port 80 and HTTPS on 443, bound to every address of the namespace; each answer
  is a JSON line naming the local address that answered, the SNI and Host it saw, and how many
  body bytes it read: a check can prove *which* server a request really reached (a request that
  reached the "private" address is a failed SSRF guard, whatever the status says).
- DNS (dnspython for the wire format): A queries get the configured answer for the exact name,
  the ``default`` answer for any other name (like the internet, every name resolves), and names in
  ``rebind`` get their first address once, then the second one, always with TTL 0. AAAA queries
  get an empty answer, so the lab stays IPv4.

Config: ``{"cert": PEM or "", "dns": "IP", "default": "IP", "names": {name: IP},
"rebind": {name: [FIRST, THEN]}}``. Prints ``ready`` once everything listens; stops on SIGTERM.
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

_MAX_BODY = 64 << 20


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        got = 0
        while got < min(length, _MAX_BODY):
            chunk = self.rfile.read(min(1 << 16, length - got))
            if not chunk:
                break
            got += len(chunk)
        body = json.dumps({
            "origin": self.connection.getsockname()[0],
            "tls": isinstance(self.connection, ssl.SSLSocket),
            "sni": getattr(self.connection, "corral_sni", None),
            "host": self.headers.get("Host"),
            "method": self.command,
            "received": got,
        }).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        sys.stdout.write(f"origin {self.address_string()} {format % args}\n")
        sys.stdout.flush()


def _tls(cert: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert)

    def remember(sock: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.corral_sni = name

    ctx.sni_callback = remember
    return ctx


def start_origin(cert: str) -> list[ThreadingHTTPServer]:
    servers = []
    for port, tls in ((80, False), (443, True)):
        httpd = ThreadingHTTPServer(("0.0.0.0", port), Origin)
        httpd.daemon_threads = True
        if tls and cert:
            httpd.socket = _tls(cert).wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True, name=f"origin-{port}").start()
        servers.append(httpd)
    return servers


class Dns:
    """Answers from the config; remembers which rebinding names were already answered."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.default = str(config["default"])
        self.names = {k.lower().rstrip("."): str(v) for k, v in config.get("names", {}).items()}
        self.rebind = {k.lower().rstrip("."): list(v) for k, v in config.get("rebind", {}).items()}
        self.seen: set[str] = set()

    def address(self, name: str) -> str:
        if name in self.rebind:
            first, then = self.rebind[name]
            out = then if name in self.seen else first
            self.seen.add(name)
            return str(out)
        return self.names.get(name, self.default)

    def reply(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if query.question:
            q = query.question[0]
            name = q.name.to_text().lower().rstrip(".")
            if q.rdtype == dns.rdatatype.A:
                addr = self.address(name)
                reply.answer.append(dns.rrset.from_text(q.name, 0, dns.rdataclass.IN,
                                                        dns.rdatatype.A, addr))
                sys.stdout.write(f"dns {name} A -> {addr}\n")
                sys.stdout.flush()
        return bytes(reply.to_wire())


def serve_dns(config: dict[str, Any]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((str(config["dns"]), 53))
    server = Dns(config)

    def loop() -> None:
        while True:
            data, peer = sock.recvfrom(4096)
            try:
                sock.sendto(server.reply(data), peer)
            except Exception as exc:  # a malformed packet is logged and dropped
                sys.stdout.write(f"dns: bad query from {peer}: {exc}\n")

    threading.Thread(target=loop, daemon=True, name="dns").start()


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        config = json.load(f)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    start_origin(str(config.get("cert") or ""))
    serve_dns(config)
    print("ready", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
