"""The control plane's own SQLite store (WAL): incidents, event counts, quarantine state, actions.

The app writes here in batches (one transaction per drain); the JSON API reads from here. Raw
events are not kept (they go to the sinks); behaviour aggregates live in corral.store.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from corral.control.incidents import Incident

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
  id TEXT PRIMARY KEY, agent TEXT, severity TEXT NOT NULL, status TEXT NOT NULL,
  first_seen REAL NOT NULL, last_seen REAL NOT NULL, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS incidents_last ON incidents(last_seen);
DROP INDEX IF EXISTS incidents_agent;
CREATE INDEX IF NOT EXISTS incidents_of_agent ON incidents(agent);
CREATE TABLE IF NOT EXISTS event_counts (
  day TEXT NOT NULL, agent TEXT NOT NULL, source TEXT NOT NULL, rule TEXT NOT NULL,
  count INTEGER NOT NULL, PRIMARY KEY (day, agent, source, rule));
CREATE TABLE IF NOT EXISTS quarantine (
  agent TEXT PRIMARY KEY, since REAL NOT NULL, incident TEXT, pods BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, action TEXT NOT NULL,
  agent TEXT NOT NULL, target TEXT NOT NULL, ok INTEGER NOT NULL, detail BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS incident_samples (id TEXT PRIMARY KEY, samples BLOB NOT NULL);
"""
_UPSERT = ("INSERT INTO incidents VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
           "agent = excluded.agent, severity = excluded.severity, status = excluded.status, "
           "first_seen = excluded.first_seen, last_seen = excluded.last_seen, doc = excluded.doc")
_DOCS = ("SELECT i.doc, s.samples FROM incidents i "
         "LEFT JOIN incident_samples s ON s.id = i.id")


def connect(path: str | Path) -> sqlite3.Connection:
    """A WAL-mode connection in autocommit (transactions are explicit)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class IncidentStore:
    def __init__(self, path: str | Path) -> None:
        self._conn = connect(path)
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def write(self, incidents: Iterable[Incident], counts: dict[tuple[str, str, str], int],
              now: float) -> None:
        """Upsert changed incidents (their samples only when new ones came) and add event
        counts, in one transaction."""
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        incidents = list(incidents)
        rows = [(i.id, i.agent, i.severity, i.status, i.first_seen, i.last_seen,
                 orjson.dumps(i.head())) for i in incidents]
        samples = [(i.id, orjson.dumps(i.samples)) for i in incidents
                   if len(i.samples) != i.samples_stored]
        with self._tx() as c:
            c.executemany(_UPSERT, rows)  # an update in place: no delete, the rowid stays
            c.executemany("INSERT OR REPLACE INTO incident_samples VALUES (?,?)", samples)
            c.executemany(
                "INSERT INTO event_counts VALUES (?,?,?,?,?) ON CONFLICT(day, agent, source, rule)"
                " DO UPDATE SET count = count + excluded.count",
                [(day, a, s, r, n) for (a, s, r), n in counts.items()])

        for inc in incidents:
            inc.samples_stored = len(inc.samples)

    def open_incidents(self) -> list[Incident]:
        rows = self._conn.execute(_DOCS + " WHERE i.status = 'open'").fetchall()
        found = [_incident(_doc(d, s)) for d, s in rows]
        for inc in found:
            inc.samples_stored = len(inc.samples)
        return found

    def incidents(self, *, agent: str | None = None, status: str | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
        sql, args = _DOCS + " WHERE 1=1", list[Any]()
        if agent is not None:
            sql, args = sql + " AND i.agent = ?", [*args, agent]
        if status is not None:
            sql, args = sql + " AND i.status = ?", [*args, status]
        rows = self._conn.execute(sql + " ORDER BY i.last_seen DESC LIMIT ?", [*args, limit])
        return [_doc(d, s) for d, s in rows]

    def incident(self, inc_id: str) -> dict[str, Any] | None:
        row = self._conn.execute(_DOCS + " WHERE i.id = ?", (inc_id,)).fetchone()
        return _doc(*row) if row else None

    def event_counts(self, agent: str | None = None) -> dict[str, dict[str, int]]:
        """agent -> source -> total events, over all days."""
        sql = "SELECT agent, source, SUM(count) FROM event_counts"
        rows = self._conn.execute(
            sql + (" WHERE agent = ? GROUP BY agent, source" if agent is not None
                   else " GROUP BY agent, source"), (agent,) if agent is not None else ())
        out: dict[str, dict[str, int]] = {}
        for a, s, n in rows:
            out.setdefault(a, {})[s] = int(n)
        return out

    def set_quarantine(self, agent: str, since: float, incident: str | None,
                       pods: list[str]) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO quarantine VALUES (?,?,?,?)",
                      (agent, since, incident, orjson.dumps(pods)))

    def clear_quarantine(self, agent: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM quarantine WHERE agent = ?", (agent,))

    def quarantined(self) -> dict[str, dict[str, Any]]:
        rows = self._conn.execute("SELECT agent, since, incident, pods FROM quarantine")
        return {a: {"since": s, "incident": i, "pods": orjson.loads(p)} for a, s, i, p in rows}

    def log_action(self, now: float, action: str, agent: str, target: str, *, ok: bool,
                   detail: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO actions(time, action, agent, target, ok, detail)"
                      " VALUES (?,?,?,?,?,?)",
                      (now, action, agent, target, int(ok), orjson.dumps(detail)))

    def actions(self, agent: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        sql = "SELECT seq, time, action, agent, target, ok, detail FROM actions"
        args: tuple[Any, ...] = (limit,)
        if agent is not None:
            sql, args = sql + " WHERE agent = ?", (agent, limit)
        rows = self._conn.execute(sql + " ORDER BY seq DESC LIMIT ?", args)
        return [{"seq": q, "time": t, "action": a, "agent": g, "target": x, "ok": bool(ok),
                 "detail": orjson.loads(d)} for q, t, a, g, x, ok, d in rows]

    def live_bytes(self) -> int:
        """Bytes the database uses (pages in use; the WAL is checkpointed into them)."""
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def prune(self, max_bytes: int, batch: int = 2000) -> bool:
        """Delete the oldest closed incidents (then the oldest actions) until the store is
        under ``max_bytes``; False when only open incidents and state are left over it."""
        while self.live_bytes() > max_bytes:
            with self._tx() as c:
                old = "(SELECT id FROM incidents WHERE status != 'open' ORDER BY last_seen LIMIT ?)"
                c.execute(f"DELETE FROM incident_samples WHERE id IN {old}", (batch,))
                gone = c.execute(f"DELETE FROM incidents WHERE id IN {old}", (batch,)).rowcount
                if not gone:
                    gone = c.execute("DELETE FROM actions WHERE seq IN (SELECT seq FROM actions "
                                     "ORDER BY seq LIMIT ?)", (batch,)).rowcount
            if not gone:
                return False
        return True

    def get_state(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def set_state(self, key: str, value: Any) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, orjson.dumps(value)))

    def _tx(self) -> _Tx:
        return _Tx(self._conn)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def __enter__(self) -> sqlite3.Connection:
        self._c.execute("BEGIN IMMEDIATE")
        return self._c

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        self._c.execute("COMMIT" if kind is None else "ROLLBACK")


def _doc(head: bytes, samples: bytes | None) -> dict[str, Any]:
    """An incident's JSON view from its row (rows written before samples moved out carry
    them in the doc)."""
    doc: dict[str, Any] = orjson.loads(head)
    if samples is not None:
        doc["samples"] = orjson.loads(samples)
    doc.setdefault("samples", [])
    return doc


def _incident(doc: dict[str, Any]) -> Incident:
    return Incident(
        id=doc["id"], agent=doc["agent"], subject=doc["subject"], pod=doc["pod"],
        namespace=doc["namespace"], rule=doc["rule"], severity=doc["severity"],
        first_seen=doc["first_seen"], last_seen=doc["last_seen"], count=doc["count"],
        sources=set(doc["sources"]), tags=set(doc["tags"]), rules=set(doc["rules"]),
        status=doc["status"], correlated=doc["correlated"], merged_into=doc["merged_into"],
        quarantined=doc["quarantined"], summary=doc["summary"], samples=doc["samples"],
    )
