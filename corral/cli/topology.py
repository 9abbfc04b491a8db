"""``corral topology``: what may talk to what, as SVG, Mermaid or text. Thin:
``corral.maintain.topology`` builds and draws the graph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from corral.cli import _common
from corral.learn.apply import write_atomic
from corral.maintain import topology
from corral.verify.objects import InputError, load_paths


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "topology", help="what may talk to what: SVG, Mermaid or text",
        description="Draw what may talk to what under the policy: the agents in their "
                    "namespace, each through its own gateway listener, cluster DNS, the "
                    "destinations each agent may reach, Falco and the control plane. With "
                    "--cluster, agents get their pod counts and uncovered pods in the agents' "
                    "namespace are drawn too.")
    _common.add_policy_arg(p)
    p.add_argument("--cluster", action="append", default=[], metavar="PATH",
                   help="kubectl get pods -A -o json dump (or manifests), repeatable")
    _common.add_output_arg(p, choices=("text", "mermaid", "svg"))
    p.add_argument("--out", metavar="FILE", type=Path, help="write here (default: stdout)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy, quiet_warnings=True)
    objs = None
    if args.cluster:
        try:
            objs = load_paths(args.cluster, [])
        except (InputError, OSError, UnicodeDecodeError) as exc:
            raise _common.CliError(str(exc)) from None
    graph = topology.build(policy, objs)
    if args.output == "svg":
        text = topology.to_svg(graph, f"corral topology: policy {policy.metadata.name}")
    elif args.output == "mermaid":
        text = topology.to_mermaid(graph)
    else:
        text = topology.to_text(graph)
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_atomic(args.out, text)
    return _common.EXIT_OK
