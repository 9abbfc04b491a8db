"""SQLite schema of the aggregate behaviour store (the tables ``aggregates.py`` writes).

Sits at the bottom of the store layer: plain DDL, versioned by ``user_version``. Every table is an
aggregate keyed by what behaviour is *distinct* (agent, destination, day, rule, process), so the
store grows with new behaviour, not with traffic. Times are RFC 3339 UTC text (sortable as text),
days are integers (days since 1970-01-01, UTC).

Base tables:
  dest_day    agent x host:port x day: requests, bytes, decisions, first/last seen
  dest_pod    agent x host:port x pod (client address): first/last day
  proc_total  agent x process (Falco proc.name): count, first/last seen
  falco_day   agent x Falco rule x day: count, priority, first/last seen
  falco_sig   agent x Falco rule x signature (proc, parent, file, image): count, first/last seen
Rollups maintained at ingest, so fleet-wide questions never scan ``dest_day``:
  dest_total  agent x host:port all time: first/last seen, totals, decisions
  agent_day   agent x day: totals and decisions (charts, denials per agent)
  rule_use    agent x policy rule x decision: count, first/last seen (unused allow entries)
  tld_seen    top-level domain: first seen anywhere in the fleet (newly seen TLDs)
Behaviour detail (schema 2), kept small: one row per key and day, hours as 24-bit masks:
  dest_hours  agent x host:port x day: requests per UTC hour (24 little-endian uint16, summed by
              the writer's ``hsum`` function), hours with any request and with a deny (masks)
  rule_host   agent x wildcard allow entry x host:port: last seen (wildcards used for few hosts)
  agent_hours agent x day: hours with any request and with a deny (masks; usual hours)
  falco_hours agent x Falco rule x day: UTC hours with a firing (coincidence with denials)
  falco_sig_day  agent x Falco rule x day x signature: count (shares over the window)
  live_day    agent x day fed live by `corral serve`: `corral learn` leaves those days alone
  ingested    input identity (digest of its first line) -> bytes and lines already folded in,
              so re-reading a file or an overlapping rotated copy never double-counts
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 2

_COUNTS = """
    requests INTEGER NOT NULL,
    bytes_up INTEGER NOT NULL,
    bytes_down INTEGER NOT NULL,
    n_allow INTEGER NOT NULL,
    n_deny INTEGER NOT NULL,
    n_would_deny INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL"""

DDL: Final = (
    f"""CREATE TABLE IF NOT EXISTS dest_day (
    agent TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, day INTEGER NOT NULL,{_COUNTS},
    PRIMARY KEY (agent, host, port, day)) WITHOUT ROWID""",
    # covering index for window scans (volume anomalies): day range, bytes filter, key included
    "CREATE INDEX IF NOT EXISTS dest_day_by_day ON dest_day (day, bytes_up)",
    # partial covering index of the few rows with denials (denials per agent x destination)
    """CREATE INDEX IF NOT EXISTS dest_day_denied ON dest_day (day, agent, host, port,
    requests, bytes_up, bytes_down, n_allow, n_deny, n_would_deny, first_seen, last_seen)
    WHERE n_deny + n_would_deny > 0""",
    f"""CREATE TABLE IF NOT EXISTS dest_total (
    agent TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL,{_COUNTS},
    PRIMARY KEY (agent, host, port)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS dest_total_by_first ON dest_total (first_seen)",
    f"""CREATE TABLE IF NOT EXISTS agent_day (
    agent TEXT NOT NULL, day INTEGER NOT NULL,{_COUNTS},
    PRIMARY KEY (agent, day)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS agent_day_by_day ON agent_day (day)",
    """CREATE TABLE IF NOT EXISTS rule_use (
    agent TEXT NOT NULL, rule TEXT NOT NULL, decision TEXT NOT NULL, count INTEGER NOT NULL,
    first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    PRIMARY KEY (agent, rule, decision)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS tld_seen (
    tld TEXT NOT NULL PRIMARY KEY, first_seen TEXT NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS dest_pod (
    agent TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, pod TEXT NOT NULL,
    first_day INTEGER NOT NULL, last_day INTEGER NOT NULL,
    PRIMARY KEY (agent, host, port, pod)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS proc_total (
    agent TEXT NOT NULL, proc TEXT NOT NULL, count INTEGER NOT NULL,
    first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    PRIMARY KEY (agent, proc)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS falco_day (
    agent TEXT NOT NULL, rule TEXT NOT NULL, day INTEGER NOT NULL, priority TEXT NOT NULL,
    count INTEGER NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    PRIMARY KEY (agent, rule, day)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS falco_sig (
    agent TEXT NOT NULL, rule TEXT NOT NULL, proc TEXT NOT NULL, parent TEXT NOT NULL,
    file TEXT NOT NULL, image TEXT NOT NULL, count INTEGER NOT NULL,
    first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    PRIMARY KEY (agent, rule, proc, parent, file, image)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS dest_hours (
    agent TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL, day INTEGER NOT NULL,
    hours INTEGER NOT NULL, deny_hours INTEGER NOT NULL, per_hour BLOB NOT NULL,
    PRIMARY KEY (agent, host, port, day)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS rule_host (
    agent TEXT NOT NULL, rule TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL,
    last_seen TEXT NOT NULL, PRIMARY KEY (agent, rule, host, port)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS agent_hours (
    agent TEXT NOT NULL, day INTEGER NOT NULL, hours INTEGER NOT NULL,
    deny_hours INTEGER NOT NULL, PRIMARY KEY (agent, day)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS falco_hours (
    agent TEXT NOT NULL, rule TEXT NOT NULL, day INTEGER NOT NULL, hours INTEGER NOT NULL,
    PRIMARY KEY (agent, rule, day)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS falco_sig_day (
    agent TEXT NOT NULL, rule TEXT NOT NULL, day INTEGER NOT NULL, proc TEXT NOT NULL,
    parent TEXT NOT NULL, file TEXT NOT NULL, image TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (agent, rule, day, proc, parent, file, image)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS live_day (
    agent TEXT NOT NULL, day INTEGER NOT NULL, PRIMARY KEY (agent, day)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS ingested (
    source_id TEXT NOT NULL PRIMARY KEY, bytes INTEGER NOT NULL, lines INTEGER NOT NULL,
    name TEXT NOT NULL) WITHOUT ROWID""",
)

_ADD_COUNTS = """requests = requests + excluded.requests,
    bytes_up = bytes_up + excluded.bytes_up, bytes_down = bytes_down + excluded.bytes_down,
    n_allow = n_allow + excluded.n_allow, n_deny = n_deny + excluded.n_deny,
    n_would_deny = n_would_deny + excluded.n_would_deny,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen)"""

UPSERT_DEST_DAY: Final = f"""INSERT INTO dest_day VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
    ON CONFLICT (agent, host, port, day) DO UPDATE SET {_ADD_COUNTS}"""
UPSERT_DEST_TOTAL: Final = f"""INSERT INTO dest_total VALUES (?,?,?,?,?,?,?,?,?,?,?)
    ON CONFLICT (agent, host, port) DO UPDATE SET {_ADD_COUNTS}"""
UPSERT_AGENT_DAY: Final = f"""INSERT INTO agent_day VALUES (?,?,?,?,?,?,?,?,?,?)
    ON CONFLICT (agent, day) DO UPDATE SET {_ADD_COUNTS}"""
UPSERT_RULE_USE: Final = """INSERT INTO rule_use VALUES (?,?,?,?,?,?)
    ON CONFLICT (agent, rule, decision) DO UPDATE SET count = count + excluded.count,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen)"""
UPSERT_TLD: Final = """INSERT INTO tld_seen VALUES (?,?)
    ON CONFLICT (tld) DO UPDATE SET first_seen = min(first_seen, excluded.first_seen)"""
UPSERT_DEST_POD: Final = """INSERT INTO dest_pod VALUES (?,?,?,?,?,?)
    ON CONFLICT (agent, host, port, pod) DO UPDATE SET
    first_day = min(first_day, excluded.first_day), last_day = max(last_day, excluded.last_day)"""
UPSERT_PROC: Final = """INSERT INTO proc_total VALUES (?,?,?,?,?)
    ON CONFLICT (agent, proc) DO UPDATE SET count = count + excluded.count,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen)"""
UPSERT_FALCO_DAY: Final = """INSERT INTO falco_day VALUES (?,?,?,?,?,?,?)
    ON CONFLICT (agent, rule, day) DO UPDATE SET count = count + excluded.count,
    priority = excluded.priority,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen)"""
UPSERT_FALCO_SIG: Final = """INSERT INTO falco_sig VALUES (?,?,?,?,?,?,?,?,?)
    ON CONFLICT (agent, rule, proc, parent, file, image) DO UPDATE SET
    count = count + excluded.count,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen)"""
UPSERT_DEST_HOURS: Final = """INSERT INTO dest_hours VALUES (?,?,?,?,?,?,?)
    ON CONFLICT (agent, host, port, day) DO UPDATE SET hours = hours | excluded.hours,
    deny_hours = deny_hours | excluded.deny_hours,
    per_hour = hsum(per_hour, excluded.per_hour)"""
UPSERT_FALCO_HOURS: Final = """INSERT INTO falco_hours VALUES (?,?,?,?)
    ON CONFLICT (agent, rule, day) DO UPDATE SET hours = hours | excluded.hours"""
UPSERT_FALCO_SIG_DAY: Final = """INSERT INTO falco_sig_day VALUES (?,?,?,?,?,?,?,?)
    ON CONFLICT (agent, rule, day, proc, parent, file, image) DO UPDATE SET
    count = count + excluded.count"""
UPSERT_INGESTED: Final = """INSERT INTO ingested VALUES (?,?,?,?)
    ON CONFLICT (source_id) DO UPDATE SET bytes = excluded.bytes, lines = excluded.lines,
    name = excluded.name"""
UPSERT_AGENT_HOURS: Final = """INSERT INTO agent_hours VALUES (?,?,?,?)
    ON CONFLICT (agent, day) DO UPDATE SET hours = hours | excluded.hours,
    deny_hours = deny_hours | excluded.deny_hours"""
UPSERT_RULE_HOST: Final = """INSERT INTO rule_host VALUES (?,?,?,?,?)
    ON CONFLICT (agent, rule, host, port) DO UPDATE SET
    last_seen = max(last_seen, excluded.last_seen)"""
INSERT_LIVE_DAY: Final = "INSERT OR IGNORE INTO live_day VALUES (?,?)"
