"""``corral check PATH...``: the compiled admission policy against manifests, offline.

Exit 0 when every object in scope passes, 1 on violations, 2 when input is unreadable (file and
line named) or the policy is invalid.
"""

from __future__ import annotations

import argparse
import gc
import sys
from dataclasses import replace
from typing import Any

from corral.check.engine import Checker, Outcome
from corral.check.read import ReadError, read_text, sources
from corral.check.report import FORMATS, Run, render
from corral.cli import _common


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "check", help="check manifests against the compiled admission policy (CEL, offline)",
        description="Evaluate the ValidatingAdmissionPolicy that `corral render` compiles "
                    "against manifests: files, folders, multi-document YAML, JSON lists, or - "
                    "for stdin. Exit 0 clean, 1 violations, 2 unreadable input.")
    _common.add_policy_arg(p)
    _common.add_output_arg(p, choices=FORMATS)
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, folder, or - for stdin")
    p.add_argument("--all-namespaces", action="store_true",
                   help="also check objects whose namespace is not the policy's")
    p.set_defaults(run=run)


def check_paths(checker: Checker, paths: list[str]) -> Run:
    outcomes: list[Outcome] = []
    errors: list[ReadError] = []
    try:
        for source, content in sources(paths, sys.stdin):
            try:
                # keep the findings, not the objects: memory (and GC time) stays flat
                outcomes.extend(replace(o, doc=o.doc.slim())
                                for o in map(checker.check, read_text(source, content)))
            except ReadError as exc:
                errors.append(exc)
    except ReadError as exc:
        errors.append(exc)
    return Run(outcomes, errors)


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy, quiet_warnings=True)
    # The check allocates many small, acyclic objects and keeps every result: the cyclic
    # collector would walk the growing result list again and again for nothing. A one-shot
    # command frees everything at exit, so collection is paused for the check itself.
    gc.disable()
    try:
        result = check_paths(Checker(policy, all_namespaces=args.all_namespaces), args.paths)
    finally:
        gc.enable()
    sys.stdout.write(render(result, args.output))
    if result.errors:
        return _common.EXIT_USAGE
    return _common.EXIT_FINDINGS if result.violations else _common.EXIT_OK
