"""``corral validate``: load a policy, print errors and lint warnings; CI-friendly exit code."""

from __future__ import annotations

import argparse
from typing import Any

from corral.cli import _common
from corral.model.errors import PolicyError
from corral.model.load import load_policy_checked
from corral.model.wording import counted


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate", help="check a policy file and list its errors and warnings",
        description="Validate corral.yaml. Exit 0 when valid, 2 when not; with --strict, "
                    "lint warnings exit 1.")
    _common.add_policy_arg(p)
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="policy file, the same as -f FILE")
    _common.add_output_arg(p)
    p.add_argument("--strict", action="store_true", help="treat lint warnings as failures")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.file is not None:
        if args.policy not in (_common.DEFAULT_POLICY, args.file):
            raise _common.CliError("give the policy file once: as FILE or as -f FILE")
        args.policy = args.file
    _common.require_policy(args.policy)
    try:
        policy, warnings = load_policy_checked(args.policy)
    except PolicyError as exc:
        problems = list(exc.problems)
        if args.output == "text":
            _common.print_problems(problems)
        else:
            _common.emit({"valid": False, "problems": [p.as_dict() for p in problems]}, args.output)
        return _common.EXIT_USAGE
    if args.output == "text":
        _common.print_problems(warnings)
        ports = policy.spec.listener_ports()
        _common.stdout().print(
            f"{args.policy}: valid; {counted(len(policy.spec.agents), 'agent')} ("
            + ", ".join(f"{n} on :{p}" for n, p in ports.items())
            + f"), {counted(len(warnings), 'warning')}", markup=False)
    else:
        _common.emit({"valid": True, "problems": [w.as_dict() for w in warnings]}, args.output)
    return _common.EXIT_FINDINGS if args.strict and warnings else _common.EXIT_OK
