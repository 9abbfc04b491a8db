"""``corral review``: the weekly behaviour review, its suggestions as a diff, and ``--apply``."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from corral.cli import _common
from corral.learn import apply, html, render
from corral.learn.build import build_report
from corral.learn.report import IncidentRef, Report, ReviewOptions
from corral.learn.suggest import Suggestion, suggestions
from corral.model.errors import PolicyError
from corral.model.policy import Policy
from corral.model.quantity import parse_bytes
from corral.store.aggregates import AggregateStore

_DURATION = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 7d, 36h or 2w, got {text!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def instant(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an RFC 3339 time, got {text!r}") from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset (e.g. ...Z)")
    return t.astimezone(UTC)


def quantity(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "review", help="weekly review of agent behaviour; suggest and apply policy changes",
        description="Report new destinations (with risk flags), denials, unused allow entries, "
                    "volume anomalies, noisy Falco rules and learn-mode agents ready to enforce. "
                    "--suggest prints the policy change as a unified diff; --apply writes it "
                    "(comments kept; risky additions only with --include-risky; nothing written "
                    "when the result is invalid).")
    _common.add_policy_arg(p)
    p.add_argument("--store", default="corral-profiles.db", metavar="PATH",
                   help="SQLite store written by `corral learn` / `corral serve`")
    p.add_argument("--since", type=duration, default=timedelta(days=7), metavar="DURATION",
                   help="review window, e.g. 7d, 36h, 2w (default: 7d)")
    p.add_argument("--now", type=instant, default=None, metavar="TIME",
                   help="end of the window (RFC 3339; default: the current time)")
    _common.add_output_arg(p, choices=("text", "markdown", "json", "html"))
    p.add_argument("--suggest", action="store_true", help="print the policy change as a diff")
    p.add_argument("--apply", action="store_true", help="write the suggested policy change")
    p.add_argument("--include-risky", action="store_true",
                   help="also apply risky suggestions (a risk or behaviour flag on the "
                        "destination, or other signals of the agent in the window); each one "
                        "included is named on stderr")
    p.add_argument("--incidents", metavar="DB", default=None,
                   help="the control plane's incidents.db (`corral serve --state DIR`): its "
                        "incidents join the agents' stories and block Falco exceptions")
    p.add_argument("--falco-rules", metavar="FILE", default=None,
                   help="Falco exceptions file (default: falco-exceptions.yaml beside the policy)")
    p.add_argument("--unused-days", type=int, default=30, metavar="N",
                   help="allow entries unused for N days are suggested for removal (default 30)")
    p.add_argument("--stable-days", type=int, default=7, metavar="N",
                   help="learn-mode agents with no new destination for N days may enforce")
    p.add_argument("--min-anomaly-bytes", type=quantity, default=1 << 20, metavar="BYTES",
                   help="daily bytes out below this are never anomalies (default 1Mi)")
    p.set_defaults(run=run)


def _options(args: argparse.Namespace) -> ReviewOptions:
    return ReviewOptions(now=args.now or datetime.now(UTC), window=args.since,
                         unused_days=args.unused_days, stable_days=args.stable_days,
                         anomaly_min_bytes=args.min_anomaly_bytes)


def _show(report: Report, fmt: str, chosen: list[Suggestion] | None,
          diff: str | None = None) -> None:
    if fmt == "json":
        data = report.as_dict()
        if chosen is not None:
            data["suggestions"] = [_sd(s) for s in chosen]
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "markdown":
        sys.stdout.write(render.markdown(report, chosen) + "\n")
    elif fmt == "html":
        sys.stdout.write(html.page(report, chosen, diff))
    else:
        render.print_text(_common.stdout(), report, chosen)


def _sd(s: Suggestion) -> dict[str, Any]:
    return {"kind": s.kind, "agent": s.agent, "field": s.field, "value": s.value,
            "reason": s.reason, "risky": s.risky, "replacement": list(s.replacement)}


def load_policy_fast(path: str) -> Policy:
    """The review needs the policy, not its lint or error positions: libyaml + pydantic is
    ~10x faster than the round-trip loader on a 1,000-agent policy. On any problem, fall back
    to the full loader, which reports every error with its line."""
    try:
        with open(path, "rb") as fh:
            doc = yaml.load(fh, Loader=yaml.CSafeLoader)
        return Policy.model_validate(doc)
    except (OSError, yaml.YAMLError, ValidationError):
        return _common.load(path, quiet_warnings=True)


def _incidents(path: str | None) -> list[IncidentRef]:
    """The control plane's incidents (attributed to an agent), read from its store."""
    if path is None:
        return []
    if not Path(path).is_file():
        raise _common.CliError(f"incidents store {path!r} does not exist")
    from corral.control.store import IncidentStore  # noqa: PLC0415 - only --incidents needs it

    store = IncidentStore(path)
    try:
        docs = store.incidents(limit=100_000)
    finally:
        store.close()
    return [IncidentRef(str(d["id"]), str(d["agent"]), str(d["severity"]), str(d["rule"]),
                        float(d["first_seen"]), float(d["last_seen"]))
            for d in docs if d.get("agent")]


def run(args: argparse.Namespace) -> int:
    policy = load_policy_fast(args.policy)
    try:
        store = AggregateStore.open(args.store, readonly=True)
    except FileNotFoundError as exc:
        raise _common.CliError(str(exc)) from None
    with store:
        report = build_report(store.conn, policy, _options(args), args.policy,
                              _incidents(args.incidents))
    if not (args.suggest or args.apply):
        if args.output != "html":
            _show(report, args.output, None)
            return _common.EXIT_OK
        chosen = suggestions(report, policy)  # the page carries the change as a diff
        text = Path(args.policy).read_text(encoding="utf-8")
        edit = apply.apply_suggestions(text, chosen, include_risky=args.include_risky,
                                       note=f"added by corral review {report.generated[:10]}")
        _show(report, "html", chosen, apply.unified_diff(text, edit.text, args.policy))
        return _common.EXIT_OK
    return _suggest(args, report, suggestions(report, policy))


def _suggest(args: argparse.Namespace, report: Report, chosen: list[Suggestion]) -> int:
    text = Path(args.policy).read_text(encoding="utf-8")
    note = f"added by corral review {report.generated[:10]}"
    edit = apply.apply_suggestions(text, chosen, include_risky=args.include_risky, note=note)
    falco_path = Path(args.falco_rules or Path(args.policy).parent / "falco-exceptions.yaml")
    exceptions = [n.exception for n in report.falco if n.exception is not None]
    old_rules = falco_path.read_text(encoding="utf-8") if falco_path.exists() else ""
    try:
        new_rules = apply.falco_rules_text(exceptions, old_rules) if exceptions else old_rules
    except ValueError as exc:
        raise _common.CliError(f"{falco_path}: {exc}; nothing was written") from None
    try:
        apply.validate(edit.text, args.policy)
    except PolicyError as exc:
        _common.print_problems(list(exc.problems))
        raise _common.CliError(
            "the suggested policy does not validate; nothing was written") from None
    policy_diff = apply.unified_diff(text, edit.text, args.policy)
    rules_diff = apply.unified_diff(old_rules, new_rules, str(falco_path))
    con = _common.stderr()
    if args.output == "json":
        _common.emit({"applied": [_sd(s) for s in edit.applied],
                      "held_back": [_sd(s) for s in edit.held_back],
                      "policy_diff": policy_diff, "falco_rules_diff": rules_diff}, "json")
    else:
        sys.stdout.write(policy_diff + rules_diff)
        for s in edit.held_back:
            con.print(f"held back (risky, needs --include-risky): {s.agent} {s.kind} "
                      f"{s.value}: {s.reason}", markup=False)
        for s in edit.applied:
            if s.risky:
                con.print(f"included because of --include-risky: {s.agent} {s.kind} "
                          f"{s.value}: {s.reason}", markup=False)
    if args.apply:
        if edit.applied:
            apply.write_policy(args.policy, edit.text)
        if new_rules != old_rules:
            apply.write_atomic(falco_path, new_rules)
        con.print(f"applied {len(edit.applied)} policy changes to {args.policy}"
                  + (f"; Falco exceptions in {falco_path}" if new_rules != old_rules else ""),
                  markup=False)
    return _common.EXIT_OK
