"""Synthetic inputs for the learn/review benchmarks.

- ``access_log``: gateway access-log lines (the real record shape, ~370 bytes each) for a busy
  day of a fleet: many agents, tens of destinations each, several pods, mostly allowed traffic.
- ``fleet_store`` + ``fleet_policy``: the aggregate store of 90 days x 1,000 agents x 200
  destinations (18M agent x destination x day rows) with realistic shape — lognormal daily
  volumes, 2% heavy uploaders (1% of those with a 50x burst two days ago), ~1% destinations
  new in the last week, ~1% denied — written
  straight into the store's tables (ingesting 18M+ lines first would only re-measure ingest),
  and a policy whose agents allow their vendors by wildcard.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from corral.model import records as rec
from corral.store.access import day_iso, day_number, pack_hours, unpack_hours
from corral.store.aggregates import AggregateStore

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
VENDORS = 20  # vendor domains per agent, allowed by wildcard
PER_VENDOR = 10  # hosts per vendor domain


def _host(agent: int, dest: int) -> str:
    return f"api{dest % PER_VENDOR}.vendor{(agent * 7 + dest // PER_VENDOR) % 400}.com"


def access_log(path: Path, lines: int, *, agents: int = 100, dests: int = 50,
               pods: int = 4, seed: int = 1) -> None:
    """``lines`` access-log lines of one day, written in chunks."""
    rnd = random.Random(seed)
    start = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    with path.open("wb") as fh:
        for chunk_start in range(0, lines, 100_000):
            n = min(100_000, lines - chunk_start)
            fh.write(b"\n".join(_line(rnd, start, agents, dests, pods) for _ in range(n)) + b"\n")


def _line(rnd: random.Random, start: datetime, agents: int, dests: int, pods: int) -> bytes:
    a, d = rnd.randrange(agents), rnd.randrange(dests)
    denied = d % 50 == 49
    t = start + timedelta(milliseconds=rnd.randrange(86_400_000))
    host = _host(a, d)
    return orjson.dumps({
        rec.TIME: t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", rec.KIND: rec.KIND_ACCESS,
        rec.AGENT: f"agent-{a:04d}", rec.CLIENT: f"10.{a // 250}.{a % 250}.{10 + d % pods}:"
                                                f"{rnd.randrange(32768, 61000)}",
        rec.METHOD: "CONNECT", rec.HOST: host, rec.PORT: 443, rec.PATH: None,
        rec.DECISION: "deny" if denied else "allow",
        rec.REASON: "not_in_allowlist" if denied else "allowed_by_rule",
        rec.RULE: None if denied else f"*.{host.split('.', 1)[1]}",
        rec.RESOLVED: f"198.51.100.{d % 250}:443", rec.SNI: host,
        rec.BYTES_UP: rnd.randrange(200, 20_000), rec.BYTES_DOWN: rnd.randrange(500, 500_000),
        rec.DURATION_MS: round(rnd.uniform(5, 900), 1), rec.STATUS: 403 if denied else 200,
        rec.POLICY_VERSION: "prod-3f2a",
    })


def fleet_policy(path: Path, agents: int) -> None:
    """A policy of ``agents`` agents, each allowing its vendor domains by wildcard."""
    lines = ["# benchmark fleet", "apiVersion: corral.dev/v1alpha1", "kind: Policy",
             "metadata: {name: bench}", "spec:", "  namespace: ai-workloads",
             "  gateway: {base_port: 20000, admin_port: 9090}", "  agents:"]
    for a in range(agents):
        vendors = sorted({_host(a, v * PER_VENDOR).split(".", 1)[1] for v in range(VENDORS)})
        lines += [f"    - name: agent-{a:04d}", f"      selector: {{app: agent-{a:04d}}}",
                  "      egress:", f"        mode: {'learn' if a % 10 == 0 else 'enforce'}",
                  "        allow:"]
        lines += [f'          - "*.{v}"' for v in vendors]
        lines.append("          - retired.example.com")
    path.write_text("\n".join(lines) + "\n")


def _dest_rows(rnd: random.Random, a: int, dests: int, days: int,
               end: int) -> Iterator[tuple[Any, ...]]:
    agent = f"agent-{a:04d}"
    for d in range(dests):
        heavy = rnd.random() < 0.02
        base = rnd.lognormvariate(14.9, 0.5) if heavy else rnd.lognormvariate(10.3, 1.0)
        first = end - rnd.randrange(7) if rnd.random() < 0.01 else end - days + 1
        denied = rnd.random() < 0.01
        host = f"api{d}.unlisted{a % 97}.net" if denied else _host(a, d)
        reqs = max(1, int(rnd.lognormvariate(3.5, 0.8)))
        burst = end - 2 if heavy and rnd.random() < 0.01 else None  # a few planted bursts
        for day in range(first, end + 1):
            if rnd.random() < 0.1 and day != burst:
                continue  # not every destination is used every day
            up = int(base * rnd.uniform(0.7, 1.3) * (50 if day == burst else 1))
            n = max(1, int(reqs * rnd.uniform(0.7, 1.3)))
            iso = day_iso(day)
            yield (agent, host, 443, day, n, up, up * 6, 0 if denied else n,
                   n if denied else 0, 0, f"{iso}T00:01:00.000Z", f"{iso}T23:59:00.000Z")


FULL_DAY = (1 << 24) - 1
# a few hourly shapes (requests per UTC hour) reused for every agent x destination x day row
_SHAPES = tuple(
    pack_hours([random.Random(i * 24 + h).randrange(0, 6) for h in range(24)])
    for i in range(16))


def _hour_rows(rnd: random.Random, rows: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    for r in rows:
        shape = _SHAPES[rnd.randrange(len(_SHAPES))]
        hours = sum(1 << h for h, n in enumerate(unpack_hours(shape)) if n)
        yield (r[0], r[1], r[2], r[3], hours, hours if r[8] else 0, shape)


def fleet_store(path: Path, *, agents: int = 1000, dests: int = 200, days: int = 90,
                seed: int = 2) -> int:
    """Fill a store with ``agents x dests x days`` aggregate rows (and their rollups)."""
    rnd = random.Random(seed)
    AggregateStore.open(path).close()  # schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    end = day_number(NOW.date().isoformat())
    total = 0
    for a in range(agents):
        rows = list(_dest_rows(rnd, a, dests, days, end))
        total += len(rows)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO dest_day VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        totals = _fold(rows, (0, 1, 2))
        conn.executemany("INSERT INTO dest_total VALUES (?,?,?,?,?,?,?,?,?,?,?)", totals)
        conn.executemany("INSERT INTO agent_day VALUES (?,?,?,?,?,?,?,?,?,?)",
                         _fold(rows, (0, 3)))
        conn.executemany("INSERT INTO rule_use VALUES (?,?,?,?,?,?)", _rules(rows))
        conn.executemany("INSERT INTO dest_hours VALUES (?,?,?,?,?,?,?)",
                         _hour_rows(rnd, rows))
        conn.executemany("INSERT INTO rule_host VALUES (?,?,?,?,?)",
                         ((t[0], f"*.{t[1].split('.', 1)[1]}", t[1], t[2], t[10])
                          for t in totals if t[6]))
        conn.executemany("INSERT INTO agent_hours VALUES (?,?,?,?)",
                         ((agent, day, FULL_DAY, 0) for agent, day in {(r[0], r[3]) for r in rows}))
        conn.executemany("INSERT OR IGNORE INTO dest_pod VALUES (?,?,?,?,?,?)",
                         ((r[0], r[1], r[2], f"10.0.{a % 250}.{p}", end - days + 1, end)
                          for r in rows if r[3] == end for p in range(3)))
        conn.execute("COMMIT")
    for tld in ("com", "net"):
        conn.execute("INSERT OR IGNORE INTO tld_seen VALUES (?, ?)", (tld, day_iso(end - days)))
    conn.close()
    return total


def _fold(rows: list[tuple[Any, ...]], key_idx: tuple[int, ...]) -> list[tuple[Any, ...]]:
    out: dict[tuple[Any, ...], list[Any]] = {}
    for r in rows:
        k = tuple(r[i] for i in key_idx)
        cur = out.get(k)
        if cur is None:
            out[k] = list(r[4:])
        else:
            for i in range(6):
                cur[i] += r[4 + i]
            cur[6], cur[7] = min(cur[6], r[10]), max(cur[7], r[11])
    return [(*k, *v) for k, v in out.items()]


def _rules(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        if r[7]:
            k = (r[0], f"*.{r[1].split('.', 1)[1]}")
            cur = out.setdefault(k, [0, r[10], r[11]])
            cur[0] += r[7]
            cur[1], cur[2] = min(cur[1], r[10]), max(cur[2], r[11])
    return [(a, rule, "allow", *v) for (a, rule), v in out.items()]
