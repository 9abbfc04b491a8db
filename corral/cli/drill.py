"""``corral drill``: the compromised-agent exercise, scored per technique and control.

Thin: parses options, runs ``corral.verify.local.drill_local`` (the catalogue of
``corral.verify.catalogue`` in the lab), prints the scorecard. Exit 1 when any technique did not
end as the catalogue expects (a technique to block that was only detected is a failure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from corral.cli import _common
from corral.verify import drill
from corral.verify.catalogue import TECHNIQUES
from corral.verify.targets import NoTarget


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "drill", help="run compromised-agent techniques and score each control",
        description="Try what a compromised agent would: exfiltration to new domains, paste "
                    "sites and DNS-looking names, domain fronting, the metadata address, IP "
                    "literals, DNS rebinding, proxy bypass, quota exhaustion, unapproved images, "
                    "shells, package managers, the service-account token, the Kubernetes API. "
                    "Prints blocked/detected/missed per technique and control, with evidence. "
                    "--local runs in network namespaces on this machine (root).")
    p.add_argument("--local", action="store_true", required=True,
                   help="run in network namespaces on this machine (needs root)")
    _common.add_policy_arg(p)
    p.add_argument("--agent", metavar="NAME",
                   help="the agent playing the compromised one (default: first enforce agent)")
    p.add_argument("--only", metavar="ID", action="append",
                   choices=[t.id for t in TECHNIQUES], help="run only this technique "
                   "(repeatable)")
    p.add_argument("--keep", metavar="DIR", type=Path,
                   help="keep the lab's work folder (logs, policy, state) in DIR")
    _common.add_output_arg(p, choices=("text", "json"))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy, quiet_warnings=True)
    from corral.verify import lab, local  # noqa: PLC0415 - the lab needs root; load it late

    reason = lab.unavailable_reason()
    if reason:
        raise _common.CliError(f"corral drill --local: {reason}. It creates network namespaces, "
                               "veth links and nftables rules, which needs root (sudo).")
    try:
        scores = local.drill_local(policy, agent=args.agent, only=args.only, keep=args.keep)
    except NoTarget as exc:
        raise _common.CliError(str(exc)) from None
    if args.output == "json":
        _common.emit(drill.to_json(scores, target="local"), "json")
    else:
        sys.stdout.write(drill.to_text(scores, f"corral drill --local ({args.policy})"))
    return _common.EXIT_OK if drill.all_ok(scores) else _common.EXIT_FINDINGS
