"""``corral up``: the local stack on one machine from one policy file, until Ctrl-C / SIGTERM.

A small list of services (``services()``), each started in order and stopped in reverse; today
the gateway, and the control plane joins the list once it exists. Prints how to point each agent
at its listener and where the logs go. ``--check`` starts everything, verifies ``/readyz`` and
exits 0 (the README smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvloop

from corral.cli import _common, serve
from corral.gateway import app
from corral.gateway.resolver import parse_nameserver

STATE_DIR = ".corral"


@dataclass(frozen=True)
class Service:
    """One part of the local stack: ``start`` returns summary lines, ``stop`` drains it."""

    name: str
    start: Callable[[], Awaitable[list[str]]]
    stop: Callable[[], Awaitable[None]]
    ready: Callable[[], Awaitable[bool]]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "up", help="run the local stack (gateway) from one policy file",
        description="Start corral on this machine: the egress gateway on loopback (one port per "
                    "agent). Runs until Ctrl-C or SIGTERM.")
    _common.add_policy_arg(p)
    p.add_argument("--log", default=None, metavar="FILE",
                   help=f"gateway access log (default: {STATE_DIR}/gateway-access.log)")
    p.add_argument("--admin-port", type=int, default=None, metavar="N",
                   help="gateway admin port (default: spec.gateway.admin_port)")
    p.add_argument("--resolver", default=None, metavar="IP[:PORT]",
                   help="DNS server for the gateway (default: /etc/resolv.conf)")
    p.add_argument("--check", action="store_true",
                   help="start, verify readiness, print the summary and exit 0")
    p.set_defaults(run=run)


def proxy_env(url: str) -> str:
    """The variables that point a client at ``url``: curl reads only the lower-case http_proxy,
    other tools only the upper-case ones, so both."""
    return " ".join(f"{name}={url}" for name in
                    ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"))


def gateway_service(args: argparse.Namespace) -> Service:
    log_path = args.log or os.path.join(STATE_DIR, "gateway-access.log")
    if log_path != "-":
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    resolver = parse_nameserver(args.resolver) if args.resolver else None
    # The overlay is the quarantine state both sides share: the control plane writes it, the
    # gateway reads it at start and on change, so a restarted gateway keeps its quarantines.
    opts = app.Options(policy_path=args.policy, admin_port=args.admin_port, log=log_path,
                       resolver=resolver, drain_seconds=5.0, overlay=overlay_path())
    holder: list[app.Runtime] = []

    async def start() -> list[str]:
        rt = app.Runtime(opts, app.load_initial(opts), say=lambda _text: None)
        holder.append(rt)
        await rt.start()
        lines = [f"gateway: policy {args.policy} (version {rt.snapshot.version})"]
        for agent, port in sorted(rt.gateway.bound().items(), key=lambda kv: kv[1]):
            lines.append(f"  agent {agent:<12} {proxy_env(f'http://127.0.0.1:{port}')}")
        lines.append(f"  admin        http://127.0.0.1:{rt.admin_port}/metrics  /readyz  "
                     "/v1/quarantine")
        lines.append(f"  access log   {os.path.abspath(log_path) if log_path != '-' else 'stdout'}")
        return lines

    async def stop() -> None:
        if holder:
            await holder[0].stop()

    async def ready() -> bool:
        return bool(holder) and await _http_ok("127.0.0.1", holder[0].admin_port or 0, "/readyz")

    return Service("gateway", start, stop, ready)


def overlay_path() -> str:
    return os.path.join(STATE_DIR, "gateway-overlay.json")


def services(args: argparse.Namespace) -> list[Service]:
    """The local stack, in start order."""
    log = args.log or os.path.join(STATE_DIR, "gateway-access.log")
    return [gateway_service(args), Service(*serve.local_service(
        args.policy, log_path=log, admin_port=args.admin_port, state_dir=STATE_DIR,
        overlay=overlay_path()))]


async def _http_ok(host: str, port: int, path: str) -> bool:
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            status = await reader.readline()
            writer.close()
    except (OSError, TimeoutError):
        return False
    return status.startswith(b"HTTP/1.1 200")


async def _run(args: argparse.Namespace) -> int:
    stack = services(args)
    started: list[Service] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    out = _common.stdout()
    try:
        for svc in stack:
            for line in await svc.start():
                out.print(line, markup=False)
            started.append(svc)
        if not all([await svc.ready() for svc in started]):
            _common.err("a service did not become ready")
            return _common.EXIT_FINDINGS
        if args.check:
            out.print("corral up: ready (--check: stopping)", markup=False)
            return _common.EXIT_OK
        out.print("corral up: running; Ctrl-C to stop", markup=False)
        await stop.wait()
        return _common.EXIT_OK
    finally:
        for svc in reversed(started):
            await svc.stop()


def run(args: argparse.Namespace) -> int:
    _common.load(args.policy)
    app.raise_fd_limit()
    try:
        return uvloop.run(_run(args))
    except OSError as exc:
        raise _common.CliError(f"cannot start: {exc}") from None
