"""``corral render``: compile the policy into every enforcement layer, one folder per target."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from corral.cli import _common
from corral.compile.render import TARGETS, render_all, with_kustomization
from corral.compile.write import WriteError, write_all
from corral.model.wording import counted


def register(sub: Any) -> None:
    folders = ", ".join(f for f, _ in TARGETS)
    p: argparse.ArgumentParser = sub.add_parser(
        "render", help="write manifests for every layer into a folder",
        description="Compile corral.yaml into plain YAML manifests, one folder per target "
                    f"({folders}). Output is deterministic; folders are replaced whole. "
                    "Nothing is written when the policy is invalid.")
    _common.add_policy_arg(p)
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--only", action="append", metavar="TARGET",
                   choices=[f for f, _ in TARGETS], help="render only this target (repeatable)")
    p.add_argument("--format", dest="output", choices=("text", "json", "yaml"), default="text",
                   help="summary format (default: text)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy)
    rendered = {folder: with_kustomization(files) for folder, files in
                render_all(policy, set(args.only) if args.only else None).items()}
    try:
        written = write_all(Path(args.out), rendered)
    except (WriteError, OSError) as exc:
        raise _common.CliError(str(exc)) from None
    summary = [{"folder": w.folder, "files": list(w.files), "objects": w.objects} for w in written]
    if args.output != "text":
        _common.emit({"out": args.out, "targets": summary}, args.output)
        return _common.EXIT_OK
    con = _common.stdout()
    total = sum(w.objects for w in written)
    for w in written:
        con.print(f"{Path(args.out) / w.folder}/: {counted(len(w.files), 'file')}, "
                  f"{counted(w.objects, 'object')}",
                  markup=False)
    con.print(f"wrote {counted(total, 'object')} for policy {policy.metadata.name!r} "
              f"({counted(len(policy.spec.agents), 'agent')}) to {Path(args.out)}",
              markup=False)
    return _common.EXIT_OK
