"""``corral verify``: prove the controls work, in a cluster (``--context``) or on this machine
(``--local``, network namespaces). Thin: parses options, calls ``corral.verify``, prints the
checks. Exit 0 only when every check passed; a control that could not be exercised is reported
as not available and does not pass.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from corral.cli import _common
from corral.verify import results
from corral.verify.targets import NoTarget


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify", help="check that egress, admission and runtime controls actually work",
        description="Run the validation checks: direct egress fails, egress through the "
                    "gateway follows the policy, unapproved images and privileged pods are "
                    "refused, an unexpected process is detected. --context runs them in a "
                    "cluster with kubectl (short-lived test pods, cleaned up); --local runs "
                    "them on this machine in network namespaces (root).")
    _common.add_target_args(
        p, agent_help="agent whose labels the test pods carry (default: first enforce agent)")
    _common.add_output_arg(p, choices=("text", "json"))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy, quiet_warnings=True)
    try:
        if args.local:
            from corral.verify import lab, local  # noqa: PLC0415 - only --local needs the lab

            reason = lab.unavailable_reason()
            if reason:
                raise _common.CliError(
                    f"corral verify --local: {reason}. It creates network namespaces, veth "
                    "links and nftables rules, which needs root (sudo).")
            checks = local.verify_local(policy, agent=args.agent, timeout_s=args.timeout,
                                        keep=args.keep)
            where = "this machine (network namespaces)"
        else:
            from corral.verify import cluster  # noqa: PLC0415 - only --context needs kubectl

            opts = cluster.Options(context=args.context, agent=args.agent, image=args.image,
                                   unapproved_image=args.unapproved_image,
                                   control_url=args.control, timeout_s=args.timeout,
                                   kubectl=args.kubectl)
            checks = cluster.verify_cluster(policy, opts, cluster.default_env(
                _common.read_token(args.control_token_file, "--control-token-file")
                if args.control_token_file else None))
            where = f"context {args.context}"
    except NoTarget as exc:
        raise _common.CliError(str(exc)) from None
    if args.output == "json":
        _common.emit(results.to_json(checks, target=where), "json")
    else:
        sys.stdout.write(results.to_text(checks, f"corral verify: {where}"))
    return _common.EXIT_OK if results.all_passed(checks) else _common.EXIT_FINDINGS
