"""``corral audit``: find over-permissive or missing network policy in manifests or a cluster dump.

Thin: loads the objects (files, folders, ``-`` for stdin), optionally the policy, and prints what
``corral.verify.audit`` finds as text, JSON or SARIF. Exit 1 when anything is found.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from corral import __version__
from corral.cli import _common
from corral.verify import audit as audit_mod
from corral.verify.objects import InputError, load_paths


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "audit", help="find over-permissive network policy in manifests or a cluster dump",
        description="Audit Kubernetes manifests or a cluster dump (kubectl get ns,networkpolicies,"
                    "pods,deployments,statefulsets,daemonsets,jobs,cronjobs -A -o json) for "
                    "namespaces without default-deny, policies that open egress to everything, "
                    "unselected pods and missing DNS egress. With -f, also agent pods no profile "
                    "covers and drift from what corral renders. Exit 1 on findings.")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="manifest files, folders, or '-' for a dump on stdin")
    p.add_argument("-f", "--policy", default=None, metavar="FILE",
                   help="corral.yaml: enables the agent-coverage and drift checks")
    p.add_argument("--include-system", action="store_true",
                   help="also audit kube-system, kube-public and kube-node-lease")
    _common.add_output_arg(p, choices=("text", "json", "sarif"))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy, quiet_warnings=True) if args.policy else None
    skipped: list[str] = []
    try:
        objs = load_paths(args.paths, skipped)
    except (InputError, OSError, UnicodeDecodeError) as exc:
        raise _common.CliError(str(exc)) from None
    for path in skipped:
        _common.stderr().print(f"note: {path}: not Kubernetes objects, skipped", markup=False)
    findings = audit_mod.audit(objs, policy, include_system=args.include_system)
    if args.output == "sarif":
        sys.stdout.write(json.dumps(audit_mod.to_sarif(findings, __version__), indent=2) + "\n")
    elif args.output == "json":
        _common.emit({"objects": len(objs), "findings": [f.as_dict() for f in findings]}, "json")
    else:
        sys.stdout.write(audit_mod.to_text(findings, len(objs)))
    return _common.EXIT_FINDINGS if findings else _common.EXIT_OK
