"""A sink's disk-backed queue: one SQLite file (WAL) per sink under the state directory.

Items are appended in one transaction per drain, read oldest first, and deleted only after the
sink acknowledged them, so an outage or a restart loses nothing (delivery is at-least-once;
every item carries a ``key`` so receivers, and Elasticsearch's ``_id``, drop redeliveries).
``max_rows`` bounds the disk: beyond it the oldest items are dropped and counted, never silently.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from corral.control.store import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY AUTOINCREMENT, item BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dead (
  id INTEGER PRIMARY KEY, item BLOB NOT NULL, error TEXT NOT NULL, time REAL NOT NULL);
"""


class DiskQueue:
    def __init__(self, path: str | Path, max_rows: int = 1_000_000) -> None:
        self._conn = connect(path)
        self._conn.executescript(_SCHEMA)
        self._path = path
        self._reader: sqlite3.Connection | None = None  # for refresh() from another thread
        self._max = max_rows
        self.depth = int(self._conn.execute("SELECT COUNT(*) FROM q").fetchone()[0])
        self.dropped = 0

    def refresh(self) -> int:
        """Re-read the depth (another process may have delivered): rows always form one
        contiguous id range (appends at the end, deletes from the front), so MIN/MAX suffice."""
        if self._reader is None:
            self._reader = connect(self._path)
        lo, hi = self._reader.execute("SELECT MIN(id), MAX(id) FROM q").fetchone()
        self.depth = 0 if lo is None else hi - lo + 1
        return self.depth

    def put(self, items: list[dict[str, Any]]) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        lo, hi = c.execute("SELECT MIN(id), MAX(id) FROM q").fetchone()
        self.depth = 0 if lo is None else hi - lo + 1
        c.executemany("INSERT INTO q(item) VALUES (?)", [(orjson.dumps(i),) for i in items])
        self.depth += len(items)
        over = self.depth - self._max
        if over > 0:
            c.execute("DELETE FROM q WHERE id IN (SELECT id FROM q ORDER BY id LIMIT ?)", (over,))
            self.depth -= over
            self.dropped += over
        c.execute("COMMIT")

    def peek(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        rows = self._conn.execute("SELECT id, item FROM q ORDER BY id LIMIT ?", (n,)).fetchall()
        return [(i, orjson.loads(b)) for i, b in rows]

    def ack(self, ids: list[int]) -> None:
        if ids:
            cur = self._conn.execute("DELETE FROM q WHERE id BETWEEN ? AND ?", (ids[0], ids[-1]))
            self.depth -= cur.rowcount

    def dead(self, rows: list[tuple[int, dict[str, Any]]], error: str, now: float) -> None:
        """Move refused items to the dead-letter table (kept for inspection and replay)."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        c.executemany("INSERT OR REPLACE INTO dead VALUES (?,?,?,?)",
                      [(i, orjson.dumps(item), error, now) for i, item in rows])
        self.depth -= c.execute("DELETE FROM q WHERE id BETWEEN ? AND ?",
                                (rows[0][0], rows[-1][0])).rowcount
        c.execute("COMMIT")

    def dead_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0])

    def close(self) -> None:
        self._conn.close()
        if self._reader is not None:
            self._reader.close()
