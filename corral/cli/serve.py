"""``corral serve``: run the control plane (Falco + gateway events in, incidents, sinks, response).

Thin: parse arguments, build ``corral.control`` settings, run the server until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import resource
import secrets
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from corral.cli import _common
from corral.compile import falco
from corral.control.app import ControlPlane, Settings
from corral.control.conns import Limits
from corral.control.response import KubeConfig, ResponseSettings
from corral.control.rules import rule_names
from corral.control.server import Router, ServerSettings, serve
from corral.gateway import app as gateway_app
from corral.model.policy import Policy

FD_RESERVE = 256  # descriptors kept for stores, queues, workers and the log


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the control plane: Falco and gateway events -> incidents -> sinks",
        description="Receive Falco http_output alerts (POST /v1/falco) and gateway access-log "
                    "lines (POST /v1/gateway, or --tail FILE), group them into incidents, "
                    "forward to the policy's sinks and quarantine agents past the threshold.")
    _common.add_policy_arg(p)
    p.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:8765)")
    p.add_argument("--state", default=".corral/control", metavar="DIR",
                   help="state directory: incidents.db, behaviour.db, sink queues")
    p.add_argument("--tail", action="append", default=[], metavar="FILE",
                   help="follow a gateway access-log file (repeatable; survives rotation)")
    p.add_argument("--rules", action="append", default=[], metavar="FILE",
                   help="Falco rules file(s) whose alerts are accepted besides corral's own; "
                        "implies --strict-rules")
    p.add_argument("--strict-rules", action="store_true",
                   help="refuse (400, counted) alerts of rules that are neither corral's compiled "
                        "rules nor in --rules files")
    p.add_argument("--gateway-admin", action="append", default=[], metavar="URL",
                   help="gateway admin base URL for quarantine (repeatable)")
    p.add_argument("--gateway-token-file", metavar="FILE",
                   help="bearer token the gateway admin API requires (its --admin-token-file)")
    p.add_argument("--overlay", metavar="FILE", help="gateway overlay file to write quarantines to")
    p.add_argument("--kube", choices=("auto", "off"), default="auto",
                   help="label pods through the Kubernetes API when running in a cluster")
    p.add_argument("--overlay-configmap", metavar="NS/NAME",
                   help="in a cluster: the gateway overlay ConfigMap to patch")
    p.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES",
                   help="largest accepted request body (default 1 MiB)")
    p.add_argument("--admin-token-file", metavar="FILE",
                   help="bearer token required for admin calls (quarantine, release) and the "
                        "read API (/v1/incidents, /v1/agents, ...)")
    p.add_argument("--ingest-token-file", metavar="FILE",
                   help="bearer token required on POST /v1/falco and /v1/gateway (unless the "
                        "client presents a certificate --client-ca verifies)")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    p.add_argument("--client-ca", metavar="FILE",
                   help="CA that signs ingest client certificates (Falco http_output mtls); a "
                        "verified certificate authenticates ingest, never admin calls")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="S",
                   help="a request must arrive whole within S seconds of its first byte "
                        "(408), and an unauthenticated connection may idle that long "
                        "(default 10)")
    p.add_argument("--idle-timeout", type=float, default=75.0, metavar="S",
                   help="close an authenticated kept-alive connection idle for S seconds "
                        "(default 75)")
    p.add_argument("--max-connections", type=int, default=4096, metavar="N",
                   help="open connections in all; a quarter is kept for authenticated clients "
                        "(default 4096, lowered to fit the file-descriptor limit)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="allow listening beyond loopback without ingest and admin credentials")
    p.add_argument("--no-aggregates", action="store_true",
                   help="do not keep behaviour aggregates (corral review reads them)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(run=run)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise _common.CliError(f"--listen {value!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def known_rules(policy: Policy, files: list[str], strict: bool) -> frozenset[str]:
    """Accepted Falco rule names when strict (empty = accept every rule)."""
    if not strict and not files:
        return frozenset()
    try:
        names = {n for f in files for n in rule_names(Path(f))}
    except (OSError, ValueError) as exc:
        raise _common.CliError(f"--rules: {exc}") from None
    return frozenset(names | set(falco.rule_names(policy)))


def settings_from(args: argparse.Namespace, policy: Policy) -> Settings:
    overlay_cm = None
    if args.overlay_configmap:
        ns, sep, name = args.overlay_configmap.partition("/")
        if not sep:
            raise _common.CliError("--overlay-configmap: expected NAMESPACE/NAME")
        overlay_cm = (ns, name)
    kube = KubeConfig.in_cluster(overlay_configmap=overlay_cm) if args.kube == "auto" else None
    return Settings(
        state_dir=Path(args.state), aggregates=not args.no_aggregates, sink_process=True,
        known_rules=known_rules(policy, args.rules, args.strict_rules),
        response=ResponseSettings(
            gateway_admin=tuple(args.gateway_admin),
            gateway_token_file=Path(args.gateway_token_file) if args.gateway_token_file else None,
            overlay_file=Path(args.overlay) if args.overlay else None,
            namespace=policy.spec.namespace,
            selectors={a.name: dict(a.selector) for a in policy.spec.agents}),
        kube=kube)


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """HTTPS when --tls-cert is given; --client-ca makes client certificates count (mTLS)."""
    if not args.tls_cert and not args.tls_key and not args.client_ca:
        return None
    if not args.tls_cert or not args.tls_key:
        raise _common.CliError("--tls-cert and --tls-key go together (and --client-ca needs "
                               "both)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            ctx.load_verify_locations(cafile=args.client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL  # admin clients use the token, not a cert
    except (OSError, ssl.SSLError) as exc:
        raise _common.CliError(f"TLS material: {exc}") from None
    return ctx


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def limits_from(args: argparse.Namespace) -> Limits:
    """Connection bounds; the cap stays below the (raised) file-descriptor limit so that an
    authenticated client can always be accepted and the stores can open files."""
    if args.header_timeout <= 0 or args.idle_timeout <= 0 or args.max_connections < 4:
        raise _common.CliError("--header-timeout and --idle-timeout must be > 0, "
                               "--max-connections >= 4")
    gateway_app.raise_fd_limit()
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cap = args.max_connections if soft == resource.RLIM_INFINITY else \
        max(4, min(args.max_connections, soft - FD_RESERVE))
    return Limits(header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
                  max_connections=cap, max_unauthenticated=max(1, cap * 3 // 4))


def server_settings(args: argparse.Namespace, host: str) -> ServerSettings:
    """Credentials and limits; refuses to listen beyond loopback without both credentials."""
    admin = _common.read_token(args.admin_token_file, "--admin-token-file") \
        if args.admin_token_file else None
    ingest = _common.read_token(args.ingest_token_file, "--ingest-token-file") \
        if args.ingest_token_file else None
    if admin is not None and admin == ingest:
        raise _common.CliError("the admin and ingest tokens must differ: an ingest credential "
                               "must never be able to release an agent")
    tls = tls_context(args)
    server = ServerSettings(args.max_body, admin_token=admin, ingest_token=ingest, tls=tls,
                            client_certs=bool(args.client_ca), limits=limits_from(args))
    missing = [what for what, absent in (
        ("an ingest credential (--ingest-token-file or --client-ca)", server.ingest_open),
        ("an admin credential (--admin-token-file)", admin is None)) if absent]
    if missing and not is_loopback(host) and not args.insecure_no_auth:
        raise _common.CliError(f"--listen {args.listen} is reachable beyond this machine but "
                               f"{' and '.join(missing)} is not configured; configure it, listen "
                               "on 127.0.0.1, or pass --insecure-no-auth")
    return server


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy)
    host, port = _listen(args.listen)
    server = server_settings(args, host)
    settings = settings_from(args, policy)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvloop.install()
    asyncio.run(_main(policy, settings, server, host=host, port=port,
                      tails=[Path(t) for t in args.tail]))
    return _common.EXIT_OK


async def _main(policy: Policy, settings: Settings, server: ServerSettings, *, host: str,
                port: int, tails: list[Path]) -> None:
    running = await start(policy, settings, server, host=host, port=port, tails=tails)
    logging.getLogger("corral.control").info(
        "corral serve listening on %s:%d (state %s, %d sinks)", host, port, settings.state_dir,
        len(running.plane.deliverers))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()


@dataclass
class Running:
    plane: ControlPlane
    listener: asyncio.Server

    async def stop(self) -> None:
        self.listener.close()
        await self.listener.wait_closed()
        await self.plane.aclose()


async def start(policy: Policy, settings: Settings, server: ServerSettings, *, host: str,
                port: int, tails: list[Path]) -> Running:
    plane = ControlPlane(policy, settings)
    for path in tails:
        plane.tail(path)
    await plane.start()
    try:
        listener = await serve(Router(plane, server), host, port)
    except OSError:
        await plane.aclose()
        raise
    return Running(plane, listener)


def local_tokens(state: Path) -> tuple[str, str]:
    """The local stack's ingest and admin tokens: kept in ``state`` (0600), made once."""
    state.mkdir(parents=True, exist_ok=True)
    tokens = []
    for name in ("ingest", "admin"):
        path = state / f"{name}.token"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16) + "\n")
        tokens.append(_common.read_token(str(path), f"{name} token file"))
    return tokens[0], tokens[1]


def local_service(policy_path: str, *, log_path: str, admin_port: int | None,
                  state_dir: str, port: int = 8765, overlay: str | None = None) -> tuple[
        str, Callable[[], Awaitable[list[str]]], Callable[[], Awaitable[None]],
        Callable[[], Awaitable[bool]]]:
    """The control plane as a ``corral up`` service (name, start, stop, ready): tails the
    gateway's access log and quarantines through the gateway's admin API on loopback and the
    ``overlay`` file the gateway reads (re-applied at start: the two agree after any restart).
    Ingest and admin calls need the tokens kept in the state directory."""
    policy = _common.load(policy_path, quiet_warnings=True)
    admin = admin_port or policy.spec.gateway.admin_port
    state = Path(state_dir) / "control"
    ingest_token, admin_token = local_tokens(state)
    server = ServerSettings(admin_token=admin_token, ingest_token=ingest_token)
    settings = Settings(
        state_dir=state, sink_process=True,
        response=ResponseSettings(gateway_admin=(f"http://127.0.0.1:{admin}",),
                                  overlay_file=Path(overlay) if overlay else None,
                                  namespace=policy.spec.namespace,
                                  selectors={a.name: dict(a.selector)
                                             for a in policy.spec.agents}))
    holder: list[Running] = []

    async def start_() -> list[str]:
        tails = [Path(log_path)] if log_path != "-" else []
        note = []
        try:
            running = await start(policy, settings, server, host="127.0.0.1",
                                  port=port, tails=tails)
        except OSError as exc:  # the usual port is taken: any free one, said out loud
            running = await start(policy, settings, server, host="127.0.0.1",
                                  port=0, tails=tails)
            note = [f"  (port {port} unavailable: {exc.strerror}; pass --server to release)"]
        holder.append(running)
        bound = running.listener.sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{bound}"
        return [f"control: {base}/v1/falco (Falco http_output)  {base}/v1/incidents  "
                f"/v1/agents  /metrics", *note,
                f"  tailing      {log_path}; quarantine via http://127.0.0.1:{admin}"
                + (f" and {overlay}" if overlay else "") + "; release: corral release AGENT",
                f"  credentials  Authorization: Bearer $(cat {state}/ingest.token) to post "
                f"events; {state}/admin.token for /v1/* reads and admin calls"]

    async def stop() -> None:
        if holder:
            await holder[0].stop()

    async def ready() -> bool:
        return bool(holder)

    return "control", start_, stop, ready
