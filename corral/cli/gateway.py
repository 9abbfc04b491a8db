"""``corral gateway``: run the egress gateway for a policy file (the hot path; see docs/gateway.md).

Thin: parses flags into ``corral.gateway.app.Options`` and runs it. Prints one line per listener
on stderr (``agent research -> 127.0.0.1:8080``); access lines go to ``--log`` (default stdout).
"""

from __future__ import annotations

import argparse
from typing import Any

from corral.cli import _common
from corral.gateway import app
from corral.gateway.resolver import parse_nameserver


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "gateway", help="run the egress gateway (forward proxy, one listener port per agent)",
        description="Run the egress gateway: HTTP CONNECT and plain-HTTP forward proxy deciding "
                    "each request by the agent's listener port and the policy. SIGHUP or a "
                    "changed policy file reloads; SIGTERM drains.")
    _common.add_policy_arg(p)
    p.add_argument("--listen", default="127.0.0.1", metavar="HOST",
                   help="address the agent listeners and admin port bind (default 127.0.0.1)")
    p.add_argument("--admin-port", type=int, default=None, metavar="N",
                   help="admin port for /healthz /readyz /metrics and the quarantine API "
                        "(default: spec.gateway.admin_port)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes sharing the ports with SO_REUSEPORT; 0 = one per usable core "
                        "(CPU affinity and cgroup quota) (default 1)")
    p.add_argument("--log", default="-", metavar="FILE",
                   help="access log: a file to append to, or - for stdout (default -)")
    p.add_argument("--resolver", default=None, metavar="IP[:PORT]",
                   help="DNS server to ask (default: the nameservers of /etc/resolv.conf)")
    p.add_argument("--overlay", default=None, metavar="FILE",
                   help='quarantine overlay, JSON {"quarantined": [...]}; watched and written '
                        "by the admin API")
    p.add_argument("--limit-share", type=int, default=1, metavar="N",
                   help="replicas dividing each agent's rate and quota: each enforces 1/N, so "
                        "all together never exceed the policy (rendered: spec.gateway.replicas)")
    p.add_argument("--state", default=None, metavar="FILE",
                   help="writable file keeping quarantine changes made through the admin API "
                        "across restarts, when --overlay is read-only (a ConfigMap mount)")
    p.add_argument("--admin-token-file", default=None, metavar="FILE",
                   help="file holding a token that PUT/DELETE /v1/quarantine must send as "
                        "'Authorization: Bearer <token>' (default: no token; keep the admin "
                        "port reachable only by the control plane then)")
    p.add_argument("--control-plane", action="append", default=[], metavar="HOST",
                   help="the control plane's name or address: never dialled, on any port, "
                        "whatever the policy allows (repeatable)")
    p.add_argument("--drain-seconds", type=float, default=10.0, metavar="S",
                   help="on SIGTERM, how long open tunnels may finish (default 10)")
    p.set_defaults(run=run)


def options(args: argparse.Namespace) -> app.Options:
    """Validate flags into gateway Options (CliError with the flag named when wrong)."""
    resolver = None
    if args.resolver:
        try:
            resolver = parse_nameserver(args.resolver)
        except ValueError as exc:
            raise _common.CliError(
                f"--resolver {args.resolver!r}: expected IP[:PORT] ({exc})") from None
    if args.limit_share < 1:
        raise _common.CliError("--limit-share must be 1 or more (the number of replicas)")
    if args.workers < 0:
        raise _common.CliError("--workers must be 0 (one per core) or more")
    if args.admin_port is not None and not 0 <= args.admin_port < 65536:
        raise _common.CliError("--admin-port must be 0-65535")
    workers = args.workers or app.usable_cpus()
    token = None
    if args.admin_token_file:
        try:
            with open(args.admin_token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise _common.CliError(f"--admin-token-file: {exc}") from None
        if not token:
            raise _common.CliError(f"--admin-token-file {args.admin_token_file}: file is empty")
    return app.Options(policy_path=args.policy, listen=args.listen, admin_port=args.admin_port,
                       workers=workers, log=args.log, resolver=resolver, overlay=args.overlay,
                       drain_seconds=args.drain_seconds, reuse_port=workers > 1,
                       admin_token=token, control_plane=tuple(args.control_plane),
                       state=args.state, limit_share=args.limit_share)


def run(args: argparse.Namespace) -> int:
    _common.load(args.policy)  # readable errors (file:line path: expectation) before starting
    opts = options(args)
    try:
        app.load_initial(opts)
    except (OSError, ValueError) as exc:
        raise _common.CliError(f"--overlay {opts.overlay}: {exc}") from None
    try:
        return app.run(opts)
    except OSError as exc:
        raise _common.CliError(f"cannot start the gateway: {exc}") from None
