"""Benchmarks of issue #6: ingest >= 200,000 access-log lines/s on one core, and `corral review`
over 90 days x 1,000 agents x 200 destinations in < 2 s.

    python -m bench.learn.run ingest [--lines 2000000]
    python -m bench.learn.run review [--agents 1000 --dests 200 --days 90] [--keep DIR]

Ingest is timed in-process around ``AggregateStore.ingest_access_lines`` reading the file (wall
and CPU time of the process; the machine is shared, CPU time is the steadier figure), best of
``--runs`` into a fresh store each. Review is timed as the whole command (`python -m corral
review ... -o json`, interpreter start and policy load included), best of ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.learn import generate
from corral.store.aggregates import AggregateStore


def _machine() -> dict[str, object]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "load1": round(os.getloadavg()[0], 2)}


def ingest(lines: int, runs: int, work: Path) -> dict[str, object]:
    log = work / "access.log"
    generate.access_log(log, lines)
    results = []
    for i in range(runs):
        db = work / f"ingest-{i}.db"
        with AggregateStore.open(db) as store, log.open("rb") as fh:
            w0, c0 = time.perf_counter(), time.process_time()
            stats = store.ingest_access_lines(fh, where=str(log))
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        assert stats.records == lines, stats
        results.append({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                        "lines_per_s_wall": int(lines / wall), "lines_per_s_cpu": int(lines / cpu)})
    best = max(results, key=lambda r: r["lines_per_s_cpu"])  # type: ignore[arg-type,return-value]
    return {"bench": "ingest", "lines": lines, "bytes": log.stat().st_size, "runs": results,
            "best": best, "target_lines_per_s": 200_000, "machine": _machine()}


def _child_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _review_in_process(policy: Path, db: Path) -> tuple[float, float]:
    """CPU and wall seconds of what `corral review -o json` does after start-up: read the
    policy, build the report from the store, serialise it."""
    import orjson

    from corral.cli.review import load_policy_fast
    from corral.learn.build import build_report
    from corral.learn.report import ReviewOptions

    c, w = time.process_time(), time.perf_counter()
    loaded = load_policy_fast(str(policy))
    with AggregateStore.open(db, readonly=True) as store:
        report = build_report(store.conn, loaded, ReviewOptions(now=generate.NOW))
    orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2)
    return round(time.process_time() - c, 3), round(time.perf_counter() - w, 3)


def review(agents: int, dests: int, days: int, runs: int, work: Path) -> dict[str, object]:
    db, policy = work / "fleet.db", work / "corral.yaml"
    t0 = time.perf_counter()
    rows = generate.fleet_store(db, agents=agents, dests=dests, days=days) if not db.exists() \
        else None
    build_s = round(time.perf_counter() - t0, 1)
    generate.fleet_policy(policy, agents)
    cmd = [sys.executable, "-m", "corral", "review", "-f", str(policy), "--store", str(db),
           "--now", generate.NOW.isoformat().replace("+00:00", "Z"), "--since", "7d", "-o",
           "json"]
    times, cpu, summary = [], [], {}
    for _ in range(runs):
        t = time.perf_counter()
        c = _child_cpu()
        out = subprocess.run(cmd, check=True, capture_output=True, timeout=600).stdout
        times.append(round(time.perf_counter() - t, 3))
        cpu.append(round(_child_cpu() - c, 3))
        data = json.loads(out)
        summary = {k: len(data[k]) for k in ("new_destinations", "denied", "unused", "anomalies",
                                             "readiness")}
    inproc = [_review_in_process(policy, db) for _ in range(runs)]
    return {"bench": "review", "agents": agents, "dests": dests, "days": days,
            "in_process_cpu_s": [r[0] for r in inproc], "in_process_wall_s": [r[1] for r in inproc],
            "dest_day_rows": rows, "store_bytes": db.stat().st_size, "build_s": build_s,
            "command": " ".join(cmd), "wall_s": times, "best_s": min(times), "cpu_s": cpu,
            "best_cpu_s": min(cpu),
            "found": summary, "target_s": 2.0, "machine": _machine()}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("which", choices=("ingest", "review"))
    p.add_argument("--lines", type=int, default=2_000_000)
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--dests", type=int, default=200)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--keep", type=Path, default=None, help="work folder to keep (and reuse)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.which == "ingest":
            result = ingest(args.lines, args.runs, work)
        else:
            result = review(args.agents, args.dests, args.days, args.runs, work)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
