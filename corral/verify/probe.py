"""The probe: what a (possibly compromised) agent tries, run from where the agent runs.

Where it sits: ``corral verify`` and ``corral drill`` start it inside the agent's network namespace
(locally) or in a short-lived test pod carrying the agent's labels (in a cluster), with one JSON
plan on the command line; it prints one JSON result line per attempt and exits 0. It judges
nothing: the caller compares results with what the policy expects. Standard library only, so it
runs in any image that has Python and corral (the gateway image has both).

Attempt kinds:

- ``direct``: a TCP connection straight to ``host:port``, bypassing the proxy;
- ``connect``: ``CONNECT host:port`` through the proxy, then TLS with ``sni`` (default: the host;
  ``""`` sends none) and one ``GET /`` inside the tunnel;
- ``http``: a plain-HTTP ``GET`` of ``url`` through the proxy (absolute URI, as proxies expect);
- ``upload``: ``POST`` ``chunk`` bytes at a time to ``url`` through the proxy until ``total`` bytes
  went out or the proxy refused;
- ``read``: read a file (e.g. the service-account token) and report whether it could.

Usage: ``python -m corral.verify.probe '{"proxy": "http://10.0.0.1:8080", "timeout": 5,
"attempts": [{"id": "a1", "kind": "direct", "host": "1.2.3.4", "port": 443}]}'``.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time
from typing import Any
from urllib.parse import urlsplit

REASON_HEADER = "x-corral-reason"
_MAX_HEAD = 65536

Result = dict[str, Any]


def _result(attempt: dict[str, Any], outcome: str, **extra: Any) -> Result:
    return {"id": attempt.get("id"), "kind": attempt.get("kind"), "outcome": outcome, **extra}


def _os_outcome(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, socket.gaierror):
        return "resolve_failed"
    return "unreachable" if exc.errno in (101, 113, 65, 51) else f"error:{exc.errno or exc}"


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def _read_head(sock: socket.socket | ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers, and whatever body bytes came with the head."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > _MAX_HEAD:
            break
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2) if lines and lines[0] else []
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"no HTTP response (got {buf[:60]!r})")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


def _body(sock: socket.socket | ssl.SSLSocket, headers: dict[str, str], rest: bytes) -> bytes:
    want = int(headers.get("content-length", "0") or 0)
    while len(rest) < min(want, 4096):
        chunk = sock.recv(4096)
        if not chunk:
            break
        rest += chunk
    return rest[:4096]


def _refusal(status: int, headers: dict[str, str], body: bytes) -> Result:
    return {"status": status, "reason": headers.get(REASON_HEADER),
            "body": body.decode("utf-8", "replace").strip().splitlines()[0] if body.strip()
            else ""}


def direct(a: dict[str, Any], timeout: float) -> Result:
    try:
        _connect(str(a["host"]), int(a["port"]), timeout).close()
    except OSError as exc:
        return _result(a, _os_outcome(exc), error=str(exc))
    return _result(a, "connected")


def _proxy(plan: dict[str, Any]) -> tuple[str, int]:
    u = urlsplit(str(plan["proxy"]))
    if not u.hostname or not u.port:
        raise ValueError(f"proxy {plan['proxy']!r}: expected http://HOST:PORT")
    return u.hostname, u.port


def _tls_get(sock: socket.socket, host: str, sni: str | None, timeout: float) -> Result:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # reachability is the question here, not the origin's cert
    tls = ctx.wrap_socket(sock, server_hostname=sni or None)
    tls.settimeout(timeout)
    tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    status, headers, rest = _read_head(tls)
    body = _body(tls, headers, rest)
    tls.close()
    return {"origin_status": status, "origin_body": body.decode("utf-8", "replace").strip()}


def connect(a: dict[str, Any], plan: dict[str, Any], timeout: float) -> Result:
    host, port = str(a["host"]), int(a.get("port", 443))
    sni = a.get("sni", host)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        sock = _connect(*_proxy(plan), timeout)
    except OSError as exc:
        return _result(a, "proxy_unreachable", error=str(exc))
    try:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        status, headers, rest = _read_head(sock)
        if status != 200:
            return _result(a, "refused", **_refusal(status, headers, _body(sock, headers, rest)))
        try:
            inside = _tls_get(sock, host, sni, timeout)
        except (OSError, ConnectionError, ssl.SSLError) as exc:
            return _result(a, "tunnel_closed", status=200, error=str(exc))
        return _result(a, "reached", status=200, **inside)
    except (OSError, ConnectionError) as exc:
        return _result(a, "proxy_error", error=str(exc))
    finally:
        sock.close()


def _request(plan: dict[str, Any], method: str, url: str, body: bytes,
             timeout: float) -> tuple[int, dict[str, str], bytes]:
    u = urlsplit(url)
    host = u.netloc
    sock = _connect(*_proxy(plan), timeout)
    try:
        head = (f"{method} {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        sock.sendall(head + body)
        status, headers, rest = _read_head(sock)
        return status, headers, _body(sock, headers, rest)
    finally:
        sock.close()


def http(a: dict[str, Any], plan: dict[str, Any], timeout: float) -> Result:
    try:
        status, headers, body = _request(plan, "GET", str(a["url"]), b"", timeout)
    except (OSError, ConnectionError) as exc:
        return _result(a, "proxy_error", error=str(exc))
    if headers.get(REASON_HEADER) or status in (403, 407, 429):
        return _result(a, "refused", **_refusal(status, headers, body))
    return _result(a, "reached", status=status,
                   origin_body=body.decode("utf-8", "replace").strip())


def upload(a: dict[str, Any], plan: dict[str, Any], timeout: float) -> Result:
    total, chunk = int(a["total"]), int(a.get("chunk", 1 << 20))
    sent, requests = 0, 0
    payload = b"x" * chunk
    while sent < total and requests < 10_000:
        requests += 1
        try:
            status, headers, body = _request(plan, "POST", str(a["url"]), payload, timeout)
        except (OSError, ConnectionError) as exc:
            return _result(a, "proxy_error", sent=sent, requests=requests, error=str(exc))
        if status >= 400:
            return _result(a, "refused", sent=sent, requests=requests,
                           **_refusal(status, headers, body))
        sent += chunk
    return _result(a, "reached", sent=sent, requests=requests)


def read(a: dict[str, Any]) -> Result:
    try:
        with open(str(a["path"]), "rb") as f:
            size = len(f.read(1 << 16))
    except FileNotFoundError:
        return _result(a, "absent")
    except PermissionError:
        return _result(a, "denied")
    except OSError as exc:
        return _result(a, f"error:{exc.errno}")
    return _result(a, "read", bytes=size)


def run_attempt(a: dict[str, Any], plan: dict[str, Any]) -> Result:
    timeout = float(a.get("timeout", plan.get("timeout", 5.0)))
    kind = a.get("kind")
    started = time.monotonic()
    if kind == "direct":
        out = direct(a, timeout)
    elif kind == "connect":
        out = connect(a, plan, timeout)
    elif kind == "http":
        out = http(a, plan, timeout)
    elif kind == "upload":
        out = upload(a, plan, timeout)
    elif kind == "read":
        out = read(a)
    else:
        out = _result(a, "bad_attempt", error=f"unknown kind {kind!r}")
    out["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m corral.verify.probe PLAN_JSON\n")
        return 2
    try:
        plan = json.loads(argv[0])
        attempts = list(plan["attempts"])
    except (ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"probe: the plan is not JSON with an 'attempts' list ({exc})\n")
        return 2
    for a in attempts:
        sys.stdout.write(json.dumps(run_attempt(a, plan)) + "\n")
        sys.stdout.flush()
    return 0


def parse_results(text: str) -> dict[str, Result]:
    """Probe output (one JSON object per line, other lines ignored) -> results by attempt id."""
    out: dict[str, Result] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "id" in rec:
            out[str(rec["id"])] = rec
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
