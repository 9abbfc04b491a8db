"""Fake internet servers for the network-namespace test bed (run inside the ``inet`` namespace).

Where it sits: started by ``tests/e2e/conftest.py`` as a process in a namespace. Every response
body names which server answered (label, local address, TLS, SNI, Host), so a test can prove
which machine a request really reached: e.g. that no request ever reached the "private" server.

Usage: ``python origin.py CONFIG.json`` where the file holds
``{"cert": PEM, "servers": [{"label": "public-a", "addr": "1.2.3.4", "port": 443, "tls": true}]}``
(``cert`` = key and chain PEM file, issued by the test's trustme CA). Prints ``ready`` when all
servers listen. Stops on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    label = "?"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        sni = getattr(self.connection, "corral_sni", None)
        body = json.dumps({
            "origin": self.label,
            "addr": self.connection.getsockname()[0],
            "tls": isinstance(self.connection, ssl.SSLSocket),
            "sni": sni,
            "host": self.headers.get("Host"),
            "path": self.path,
            "method": self.command,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        sys.stdout.write(f"{self.label} {self.address_string()} {format % args}\n")
        sys.stdout.flush()


def _sni_context(cert: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert)

    def remember(sock: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.corral_sni = name

    ctx.sni_callback = remember
    return ctx


class Server(ThreadingHTTPServer):
    """Threaded server; TLS is set up per connection in its own thread, so a client that never
    sends a ClientHello (an idle tunnel) cannot stall the accept loop."""

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


def serve(config: dict[str, Any]) -> list[Server]:
    ctx = _sni_context(config["cert"]) if any(s["tls"] for s in config["servers"]) else None
    servers = []
    for spec in config["servers"]:
        handler = type(f"H_{spec['label']}", (Handler,), {"label": spec["label"]})
        httpd = Server((spec["addr"], spec["port"]), handler)
        httpd.tls = ctx if spec["tls"] else None
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    return servers


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    servers = serve(config)
    print("ready", flush=True)
    stop.wait()
    for s in servers:
        s.shutdown()


if __name__ == "__main__":
    main()
