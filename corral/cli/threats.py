"""``corral threats``: write the threat model (Markdown) from the policy, the last drill and the
previous policy. Thin: ``corral.maintain.threat`` writes the document."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral.cli import _common
from corral.learn.apply import write_atomic
from corral.maintain import threat
from corral.model.records import policy_version


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "threats", help="quarterly: write the threat model from the policy and the last drill",
        description="Generate a THREAT_MODEL.md-style document: each agent as an asset with "
                    "its reach, the drill's techniques mapped to the controls that block or "
                    "detect them with the last drill's outcome, the known gaps, and the new "
                    "capabilities since the previous policy (e.g. git show "
                    "'HEAD@{3.months.ago}:corral.yaml' > last-quarter.yaml).")
    _common.add_policy_arg(p)
    p.add_argument("--drill", metavar="JSON", help="the last corral drill -o json")
    p.add_argument("--previous", metavar="FILE",
                   help="the policy of the previous threat model (last quarter)")
    p.add_argument("--previous-drill", metavar="JSON", help="the drill of the previous model")
    p.add_argument("--date", metavar="YYYY-MM-DD", default=None,
                   help="date written in the document (default: today, UTC)")
    p.add_argument("--out", metavar="FILE", type=Path,
                   help="write the document here (default: stdout)")
    p.set_defaults(run=run)


def _drill(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _common.CliError(f"{path}: not corral drill JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("techniques"), list):
        raise _common.CliError(f"{path}: not corral drill JSON (expected 'techniques')")
    return doc


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy, quiet_warnings=True)
    previous = _common.load(args.previous, quiet_warnings=True) if args.previous else None
    text = threat.render(threat.Inputs(
        policy, args.policy, policy_version(Path(args.policy).read_bytes()),
        drill=_drill(args.drill), previous=previous, previous_drill=_drill(args.previous_drill),
        generated=args.date or datetime.now(UTC).date().isoformat()))
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_atomic(args.out, text)
        sys.stdout.write(f"{args.out}: threat model written\n")
    return _common.EXIT_OK
