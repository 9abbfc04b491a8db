"""``corral vulns``: scanner reports joined with the images agents run, and the in-cluster
scanner that writes them. Thin: ``corral.maintain.reports``, ``vulns`` and ``scanner`` do the
work. Exit 1 when a running agent image has a critical or high finding, a stale report or none.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from corral import __version__
from corral.cli import _common
from corral.cli.images import add_sources, collect
from corral.cli.review import duration, instant
from corral.compile.write import WriteError, write_all
from corral.maintain import vulns as vuln_mod
from corral.maintain.reports import ReportError, read_reports
from corral.maintain.scanner import DEFAULT_IMAGES, ScannerSettings, render_scanner
from corral.model import findings as fnd
from corral.model.wording import counted


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "vulns", help="monthly: scanner reports (Trivy, Grype) joined with the running agent "
                      "images",
        description="Read Trivy or Grype reports (JSON, CycloneDX, SARIF), join them with the "
                    "image inventory and report which running agent images carry critical or "
                    "high findings, whether a fix exists, how long they have been exposed and "
                    "what changed since the previous report set. Reports older than --max-age "
                    "are flagged and not trusted. With --render-scanner, write the CronJob that "
                    "scans the inventory in the cluster instead. Exit 1 on findings.")
    p.add_argument("reports", nargs="*", metavar="REPORT",
                   help="report files or folders (the scanner's /reports/<YYYY-MM>/)")
    p.add_argument("--previous", action="append", default=[], metavar="PATH",
                   help="last month's reports: what changed since (repeatable)")
    p.add_argument("--max-age", type=duration, default=timedelta(days=35), metavar="AGE",
                   help="reports older than this are stale, not trusted (default: 35d)")
    p.add_argument("--now", type=instant, default=None, metavar="TIME",
                   help="evaluate as of this time (RFC 3339; default: now)")
    add_sources(p)
    p.add_argument("--render-scanner", type=Path, metavar="DIR",
                   help="write the scanner CronJob over the inventory into DIR/scanner/")
    p.add_argument("--scanner", choices=tuple(DEFAULT_IMAGES), default="trivy",
                   help="--render-scanner: which scanner (default: trivy)")
    p.add_argument("--scanner-image", metavar="REF",
                   help="--render-scanner: scanner image (default: a pinned release)")
    _common.add_output_arg(p, choices=("text", "json", "sarif"))
    p.set_defaults(run=run)


def _render(args: argparse.Namespace, images: list[str]) -> int:
    policy = _common.load(args.policy, quiet_warnings=True)
    files = render_scanner(policy, images, ScannerSettings(args.scanner, args.scanner_image))
    try:
        written = write_all(args.render_scanner, {"scanner": files})
    except (WriteError, OSError) as exc:
        raise _common.CliError(str(exc)) from None
    for w in written:
        sys.stdout.write(f"{args.render_scanner / w.folder}: {counted(len(w.files), 'file')}, "
                         f"{counted(len(images), 'image')}\n")
    return _common.EXIT_OK


def run(args: argparse.Namespace) -> int:
    policy = _common.load(args.policy, quiet_warnings=True)
    inv = collect(args, policy)
    if args.render_scanner is not None:
        return _render(args, [e.ref for e in inv.running() if e.valid])
    if not args.reports:
        raise _common.CliError("name the scanner reports to read (files or folders), or "
                               "--render-scanner DIR")
    skipped: list[str] = []
    try:
        current = read_reports(args.reports, skipped)
        previous = read_reports(args.previous, skipped)
    except ReportError as exc:
        raise _common.CliError(str(exc)) from None
    for why in skipped:
        _common.stderr().print(f"note: skipped {why}", markup=False)
    rep = vuln_mod.analyse(inv, current, previous, now=args.now or datetime.now(UTC),
                           max_age=args.max_age)
    if args.output == "sarif":
        doc = fnd.to_sarif(rep.findings, vuln_mod.RULES, "corral-vulns", __version__)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif args.output == "json":
        _common.emit(vuln_mod.to_dict(rep, vuln_mod.RULES), "json")
    else:
        sys.stdout.write(vuln_mod.to_text(rep))
    return _common.EXIT_FINDINGS if rep.findings else _common.EXIT_OK
