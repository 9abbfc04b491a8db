"""``corral learn``: ingest gateway access logs and Falco events into the behaviour store."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from corral.cli import _common
from corral.learn.ingest import Ingested, ingest_source
from corral.store.aggregates import AggregateStore, IngestStats

DEFAULT_STORE = "corral-profiles.db"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "learn", help="ingest access logs and Falco events into behaviour profiles",
        description="Fold gateway access-log lines (JSON, one per line) and Falco http_output "
                    "events into the aggregate store (agent x destination x day, processes, "
                    "Falco rules). Files ending in .gz are decompressed; '-' reads stdin. "
                    "Exit 0 when something was ingested, 2 when nothing could be.")
    p.add_argument("files", nargs="*", default=["-"], metavar="FILE",
                   help="access-log or Falco event files (default: stdin)")
    p.add_argument("--store", default=DEFAULT_STORE, metavar="PATH",
                   help=f"SQLite store (default: {DEFAULT_STORE})")
    p.add_argument("-f", "--policy", default=None, metavar="FILE",
                   help="policy whose agent selectors attribute Falco events by pod labels")
    _common.add_output_arg(p, choices=("text", "json"))
    p.set_defaults(run=run)


def _ingest_all(store: AggregateStore, files: list[str], selectors: Any) -> list[Ingested]:
    if not sys.stderr.isatty():
        return [ingest_source(store, f, selectors=selectors) for f in files]
    out = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"),
               TextColumn("{task.completed:,.0f} lines"), TimeElapsedColumn())
    with Progress(*columns, console=_common.stderr(), transient=True) as bar:
        for f in files:
            task = bar.add_task(f, total=None)

            def advance(n: int, task: TaskID = task) -> None:
                bar.update(task, completed=n)

            out.append(ingest_source(store, f, selectors=selectors, progress=advance))
    return out


def run(args: argparse.Namespace) -> int:
    selectors = None
    if args.policy is not None:
        policy = _common.load(args.policy, quiet_warnings=True)
        selectors = {a.name: a.selector for a in policy.spec.agents}
    try:
        with AggregateStore.open(args.store) as store:
            done = _ingest_all(store, args.files, selectors)
    except OSError as exc:
        raise _common.CliError(f"cannot read input: {exc}") from None
    total = IngestStats()
    for d in done:
        total.add(d.stats)
    if args.output == "json":
        _common.emit({"store": args.store, "sources": [
            {"source": d.source, "kind": d.kind, **d.stats.as_dict()} for d in done]}, "json")
    else:
        con = _common.stderr()
        for d in done:
            again = (f", {d.stats.already} lines already ingested before"
                     if d.stats.already else "") + (
                f", {d.stats.live} lines of agent-days corral serve recorded live"
                if d.stats.live else "")
            con.print(f"{d.source}: {d.kind}: {d.stats.records} records, {d.stats.skipped} "
                      f"skipped, {d.stats.rejected} rejected{again}", markup=False)
            for e in d.stats.errors:
                con.print(f"  {e}", markup=False)
    if not total.records and not total.already and not total.live:
        _common.stderr().print("nothing was ingested: the input was empty or every line was "
                               "rejected", markup=False)
        return _common.EXIT_USAGE
    return _common.EXIT_OK
