"""``corral conformance``: the quarterly review of the policy against observed behaviour.
Thin: ``corral.maintain.conformance`` finds and edits. Exit 1 on findings."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from corral.cli import _common
from corral.cli.images import add_sources, collect
from corral.cli.review import duration, instant
from corral.learn.apply import unified_diff, write_policy
from corral.maintain import conformance as conf
from corral.model import findings as fnd
from corral.model.errors import PolicyError
from corral.model.wording import counted


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "conformance", help="quarterly: policy against observed behaviour, with the change as "
                            "a diff",
        description="Compare the policy with what the agents did (the behaviour store of corral "
                    "learn, and the images in use when manifests or a dump are given): unused "
                    "admission exemptions, processes never observed or observed but not listed, "
                    "allow entries and wildcards wider than what was used, stale Falco "
                    "exceptions, agents left in learn mode. --suggest prints the policy change "
                    "as a diff, --apply writes it (comments kept). Exit 1 on findings.")
    add_sources(p)
    p.add_argument("--since", type=duration, default=timedelta(days=90), metavar="AGE",
                   help="the window of behaviour (default: 90d, a quarter)")
    p.add_argument("--now", type=instant, default=None, metavar="TIME",
                   help="evaluate as of this time (RFC 3339; default: now)")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--suggest", action="store_true", help="print the policy change as a diff")
    act.add_argument("--apply", action="store_true",
                     help="write the change into the policy file (only if it validates)")
    p.add_argument("--include-risky", action="store_true",
                   help="also make the risky changes (unobserved processes, shells and tools)")
    _common.add_output_arg(p, choices=("text", "json"))
    p.set_defaults(run=run)


def _report(rep: conf.Conformance, args: argparse.Namespace) -> None:
    if args.output == "json":
        _common.emit({"window_days": rep.window_days,
                      "findings": [f.as_dict(conf.RULES) for f in rep.findings],
                      "changes": [c.as_dict() for c in rep.changes]}, "json")
        return
    out = fnd.to_text(rep.findings, conf.RULES)
    for c in rep.changes:
        who = f"{c.agent}: " if c.agent else ""
        out += f"suggest {c.kind} {who}{c.field} {c.value}{' (risky)' if c.risky else ''}" \
               f" - {c.reason}\n"
    sys.stdout.write(out + f"{counted(len(rep.findings), 'finding')} over "
                           f"{counted(rep.window_days, 'day')}, "
                           f"{counted(len(rep.changes), 'suggested change')}\n")


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy, quiet_warnings=True)
    if not args.store:
        raise _common.CliError("--store is required: the behaviour store corral learn fills")
    images = None
    if args.manifests or args.cluster or args.control_store:
        images = [s.image for e in collect(args, policy).images for s in e.sightings]
    try:
        conn = sqlite3.connect(f"file:{Path(args.store).resolve()}?mode=ro", uri=True)
        rep = conf.conformance(conn, policy, now=args.now or datetime.now(UTC),
                               window=args.since, images=images)
    except sqlite3.Error as exc:
        raise _common.CliError(f"{args.store}: not a corral behaviour store ({exc})") from None
    if not (args.suggest or args.apply):
        _report(rep, args)
        return _common.EXIT_FINDINGS if rep.findings else _common.EXIT_OK
    text = Path(args.policy).read_text(encoding="utf-8")
    new, done = conf.edit_policy(text, rep.changes, include_risky=args.include_risky)
    if args.suggest:
        sys.stdout.write(unified_diff(text, new, args.policy))
        return _common.EXIT_FINDINGS if rep.findings else _common.EXIT_OK
    try:
        write_policy(args.policy, new)
    except PolicyError as exc:
        _common.print_problems(list(exc.problems))
        raise _common.CliError("the edited policy does not validate; nothing was written") \
            from None
    sys.stdout.write(f"{args.policy}: {len(done)} changes written\n")
    return _common.EXIT_OK
