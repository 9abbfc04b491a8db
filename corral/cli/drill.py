"""``corral drill``: the compromised-agent exercise, scored per technique and control.

Thin: parses options, runs ``corral.verify.local.drill_local`` (the catalogue of
``corral.verify.catalogue`` in the lab), prints the scorecard. Exit 1 when any technique did not
end as the catalogue expects (a technique to block that was only detected is a failure).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from corral.cli import _common
from corral.model.policy import Policy
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
                    "--local runs in network namespaces on this machine (root); --context runs "
                    "against a cluster with kubectl.")
    _common.add_target_args(
        p, agent_help="the agent playing the compromised one (default: first enforce agent)")
    p.add_argument("--only", metavar="ID", action="append",
                   choices=[t.id for t in TECHNIQUES], help="run only this technique "
                   "(repeatable)")
    _common.add_output_arg(p, choices=("text", "json"))
    p.set_defaults(run=run)


def _local(args: argparse.Namespace, policy: Policy) -> list[drill.Score]:
    from corral.verify import lab, local  # noqa: PLC0415 - the lab needs root; load it late

    reason = lab.unavailable_reason()
    if reason:
        raise _common.CliError(f"corral drill --local: {reason}. It creates network namespaces, "
                               "veth links and nftables rules, which needs root (sudo).")
    return local.drill_local(policy, agent=args.agent, only=args.only, keep=args.keep)


def _cluster(args: argparse.Namespace, policy: Policy) -> tuple[list[drill.Score], dict[str, str]]:
    from corral.verify import cluster, cluster_drill  # noqa: PLC0415 - only --context

    opts = cluster.Options(context=args.context, agent=args.agent, image=args.image,
                           unapproved_image=args.unapproved_image, control_url=args.control,
                           timeout_s=args.timeout, kubectl=args.kubectl)
    skipped = {t: why for t, why in cluster_drill.LOCAL_ONLY.items()
               if args.only is None or t in args.only}
    token = _common.read_token(args.control_token_file, "--control-token-file") \
        if args.control_token_file else None
    return cluster_drill.drill_cluster(policy, opts, only=args.only,
                                       env=cluster.default_env(token)), skipped


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy, quiet_warnings=True)
    skipped: dict[str, str] = {}
    try:
        if args.local:
            scores, where = _local(args, policy), "local"
        else:
            (scores, skipped), where = _cluster(args, policy), f"context {args.context}"
    except NoTarget as exc:
        raise _common.CliError(str(exc)) from None
    if args.output == "json":
        _common.emit(drill.to_json(scores, target=where, skipped=skipped), "json")
    else:
        text = drill.to_text(scores, f"corral drill ({where}, {args.policy})")
        notes = "".join(f"skipped {t}: {why}\n" for t, why in skipped.items())
        sys.stdout.write(text + notes)
    return _common.EXIT_OK if drill.all_ok(scores) else _common.EXIT_FINDINGS
