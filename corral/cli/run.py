"""``corral run --agent NAME -- CMD``: run a command behind the agent's boundary on this machine.

Thin: loads the policy, plans the namespace (``corral.verify.run.plan``), sets it up, runs the
command with ``HTTP(S)_PROXY`` pointing at the agent's own gateway listener, tears everything
down and prints what the gateway decided. The exit code is the command's.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from corral.cli import _common
from corral.model.policy import Policy
from corral.verify import run as run_mod

DEFAULT_LOG = ".corral/run-access.log"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run", help="run a command inside an agent's egress boundary on this machine",
        description="Run CMD in a fresh network namespace whose only reachable address is the "
                    "agent's gateway listener (a gateway corral run starts, with the policy, on "
                    "a veth link), with HTTP_PROXY/HTTPS_PROXY set: the boundary the "
                    "NetworkPolicy draws in a cluster. Needs root (sudo); the command runs as "
                    "the sudo user.")
    p.add_argument("--agent", required=True, metavar="NAME", help="the agent profile to run as")
    _common.add_policy_arg(p)
    p.add_argument("--log", default=DEFAULT_LOG, metavar="FILE",
                   help="gateway access log (default: %(default)s; `corral serve --tail` it)")
    p.add_argument("--resolver", metavar="IP[:PORT]", help="DNS server for the gateway")
    p.add_argument("--subnet", metavar="CIDR", type=ipaddress.IPv4Network,
                   help="the /30 for the veth link (default: one free /30 of 10.239.0.0/16)")
    p.add_argument("--user", metavar="UID:GID",
                   help="run the command as this user (default: the sudo user)")
    p.add_argument("--timeout", type=float, metavar="S", help="kill the command after S seconds")
    p.add_argument("--quiet", action="store_true", help="no summary of gateway decisions")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.set_defaults(run=run)


def _user(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return run_mod.invoking_user()
    uid, _, gid = text.partition(":")
    if not uid.isdigit() or not gid.isdigit():
        raise _common.CliError(f"--user {text!r}: expected UID:GID, e.g. 1000:1000")
    return int(uid), int(gid)


def _taken() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         timeout=15, check=False).stdout
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
    return nets


def _policy(args: argparse.Namespace) -> Policy:
    policy = _common.load(args.policy, quiet_warnings=True)
    if args.agent not in policy.spec.listener_ports():
        names = ", ".join(a.name for a in policy.spec.agents)
        raise _common.CliError(f"no agent {args.agent!r} in {args.policy} (agents: {names})")
    return policy


def _plan(args: argparse.Namespace, policy: Policy, command: list[str]) -> run_mod.Plan:
    user = _user(args.user)
    taken = _taken()
    for _ in range(32):
        p = run_mod.plan(policy, args.agent, command, policy_path=args.policy, log=args.log,
                         subnet=args.subnet, resolver=args.resolver,
                         uid=user[0] if user else None, gid=user[1] if user else None)
        mine = ipaddress.IPv4Network(f"{p.host_ip}/{p.prefix}", strict=False)
        if not any(n.overlaps(mine) for n in taken):
            return p
        if args.subnet is not None:
            raise _common.CliError(f"--subnet {args.subnet} overlaps an address in use")
    raise _common.CliError("no free /30 in 10.239.0.0/16; pass --subnet")


def _summary(log: Path, start: int) -> str:
    try:
        with log.open("rb") as f:
            f.seek(start)
            lines = [json.loads(x) for x in f.read().splitlines() if x.strip()]
    except (OSError, ValueError):
        return "corral run: no gateway log to summarise"
    counts = Counter(str(x.get("decision")) for x in lines)
    denied = [f"  {x.get('decision')} {x.get('host')}:{x.get('port')} ({x.get('reason')})"
              for x in lines if x.get("decision") != "allow"]
    head = ", ".join(f"{n} {d}" for d, n in sorted(counts.items())) or "no requests"
    return "\n".join([f"corral run: gateway decisions: {head}", *denied[:20]])


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise _common.CliError("nothing to run: give the command after --, e.g. corral run "
                               "--agent research -- curl https://api.openai.com")
    policy = _policy(args)
    reason = run_mod.unavailable_reason()
    if reason:
        raise _common.CliError(reason)
    p = _plan(args, policy, command)
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    err = _common.stderr()
    try:
        with run_mod.Session(p) as session:
            err.print(f"corral run: agent {p.agent} in namespace {p.netns}; only {p.proxy} is "
                      f"reachable (HTTP_PROXY/HTTPS_PROXY set); log {log}", markup=False)
            code = session.run(timeout=args.timeout)
    except run_mod.RunError as exc:
        raise _common.CliError(f"corral run: {exc}") from None
    if not args.quiet:
        err.print(_summary(log, start), markup=False)
    sys.stdout.flush()
    return code
