"""The aggregate behaviour store: what agents did, kept as SQLite (WAL) aggregates.

Sits below ``control`` (``corral serve`` records what it receives) and ``learn`` (``corral learn``
ingests log files; ``corral review`` reads). Writers hand over access-log records or Falco events;
the store folds each batch in memory (``access.py``, ``falco.py``) and upserts the aggregates and
their rollups in one transaction, never one row per line. Readers use ``queries.py``.

Stable API (other layers call exactly this)::

    store = AggregateStore.open("corral.db")          # creates the file and schema if needed
    stats = store.ingest_access(records)               # Iterable[Mapping]: access-log records
    stats = store.ingest_access_lines(lines)           # Iterable[bytes | str]: JSON lines (fast)
    stats = store.ingest_falco(events, selectors={"research": {"app": "research-agent"}})
    store.ingested(source_id)                          # (bytes, lines) already folded in
    store.close()                                      # or: with AggregateStore.open(p) as s:

Each ingest call returns ``IngestStats`` (records accepted, skipped, rejected, first errors with
their line). Bad records are counted and named, never fatal. One store object is safe to share
between threads (calls are serialised); several processes may open the same file (WAL).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from corral.store import schema
from corral.store.access import MAX_ERRORS, AccessBatch, Rows, hsum
from corral.store.falco import FalcoFacts, Selectors, facts

BATCH_LINES: Final = 100_000  # lines read and parsed at once
FLUSH_LINES: Final = 2_000_000  # aggregates written at least this often (lines) ...
FLUSH_KEYS: Final = 200_000  # ... or once this many distinct keys are held in memory
Progress = Callable[[int], None]  # called with the number of lines consumed so far
# the ``ingested`` row to write with each flush, given the lines consumed so far:
# (source id, bytes, lines, name)
Mark = Callable[[int], tuple[str, int, int, str]]


@dataclass(slots=True)
class IngestStats:
    """What one ingest call did."""

    records: int = 0
    skipped: int = 0  # not access records (another ``kind``)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS, with line numbers
    already: int = 0  # lines folded in by an earlier run (same input identity), not again
    live: int = 0  # lines of agent-days `corral serve` recorded live, not counted again

    def add(self, other: IngestStats) -> None:
        self.records += other.records
        self.skipped += other.skipped
        self.rejected += other.rejected
        self.already += other.already
        self.live += other.live
        self.errors.extend(other.errors[: max(0, MAX_ERRORS - len(self.errors))])

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "skipped": self.skipped, "rejected": self.rejected,
                "already_ingested": self.already, "recorded_live": self.live,
                "errors": list(self.errors)}


class AggregateStore:
    """One SQLite database of behaviour aggregates (see ``schema`` for the tables)."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False) -> AggregateStore:
        """Open (and, unless ``readonly``, create and migrate) the store at ``path``."""
        p = str(path)
        if readonly:
            if not Path(p).exists():
                raise FileNotFoundError(f"store {p!r} does not exist (run `corral learn` first)")
            _upgrade(p)
            conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True, check_same_thread=False)
        else:
            conn = sqlite3.connect(p, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.create_function("hsum", 2, hsum, deterministic=True)
            _migrate(conn)
        conn.execute("PRAGMA cache_size=-65536")
        return cls(conn, p)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- access log -------------------------------------------------------------------------

    def ingest_access(self, records: Iterable[Mapping[str, Any]], *,
                      where: str = "<records>") -> IngestStats:
        """Fold access-log records (``corral.model.records`` fields) into the store."""
        total = IngestStats()
        it = iter(records)
        consumed = 0
        while chunk := list(islice(it, BATCH_LINES)):
            batch = AccessBatch(where=where)
            consumed += batch.add_records(chunk, consumed + 1)
            total.add(self._flush(batch))
        return total

    def ingest_access_lines(self, lines: Iterable[bytes | str], *, where: str = "<stdin>",
                            progress: Progress | None = None, first_line: int = 1,
                            mark: Mark | None = None, live: bool = False) -> IngestStats:
        """Parse JSON lines (one access record each) and fold them in. Lines are read
        ``BATCH_LINES`` at a time; the aggregates are written when ``FLUSH_LINES`` lines or
        ``FLUSH_KEYS`` distinct keys have accumulated, and at the end. ``mark`` gives the
        ``ingested`` row written in the same transaction as each flush. ``live`` (``corral
        serve``) marks each agent-day it records; other callers leave those agent-days alone,
        so the same lines through serve and learn are counted once."""
        total = IngestStats()
        it = iter(lines)
        consumed = first_line - 1
        skip: frozenset[tuple[str, int]] = frozenset() if live else self._live_days()
        batch = AccessBatch(where=where, skip_days=skip)
        while chunk := list(islice(it, BATCH_LINES)):
            consumed += batch.add_lines(chunk, consumed + 1)
            del chunk
            if batch.records >= FLUSH_LINES or len(batch.dest) >= FLUSH_KEYS:
                total.add(self._flush(batch, mark, consumed, live))
                batch = AccessBatch(where=where, skip_days=skip)
            if progress is not None:
                progress(consumed)
        total.add(self._flush(batch, mark, consumed, live))
        return total

    def _live_days(self) -> frozenset[tuple[str, int]]:
        with self._lock:
            return frozenset(self.conn.execute("SELECT agent, day FROM live_day").fetchall())

    def ingested(self, source_id: str) -> tuple[int, int]:
        """(bytes, lines) of the input ``source_id`` already folded in; (0, 0) if none."""
        with self._lock:
            row = self.conn.execute("SELECT bytes, lines FROM ingested WHERE source_id=?",
                                    (source_id,)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _flush(self, batch: AccessBatch, mark: Mark | None = None, consumed: int = 0,
               live: bool = False) -> IngestStats:
        rows = batch.rows()
        with self._lock:
            self._write(rows, mark(consumed) if mark is not None else None, live)
        return IngestStats(batch.records, batch.skipped, batch.rejected, batch.errors,
                           live=batch.live)

    def _write(self, rows: Rows, mark: tuple[str, int, int, str] | None,
               live: bool = False) -> None:
        with _transaction(self.conn) as c:
            if live:
                c.executemany(schema.INSERT_LIVE_DAY, ((r[0], r[1]) for r in rows.agent_day))
            c.executemany(schema.UPSERT_DEST_DAY, rows.dest_day)
            c.executemany(schema.UPSERT_DEST_TOTAL, rows.dest_total)
            c.executemany(schema.UPSERT_AGENT_DAY, rows.agent_day)
            c.executemany(schema.UPSERT_RULE_USE, rows.rule_use)
            c.executemany(schema.UPSERT_DEST_POD, rows.dest_pod)
            c.executemany(schema.UPSERT_TLD, rows.tld)
            c.executemany(schema.UPSERT_DEST_HOURS, rows.dest_hours)
            c.executemany(schema.UPSERT_AGENT_HOURS, rows.agent_hours)
            c.executemany(schema.UPSERT_RULE_HOST, rows.rule_host)
            if mark is not None:
                c.execute(schema.UPSERT_INGESTED, mark)

    # -- Falco ------------------------------------------------------------------------------

    def ingest_falco(self, events: Iterable[Any], *, selectors: Selectors | None = None,
                     where: str = "<falco>", first_line: int = 1,
                     mark: Mark | None = None) -> IngestStats:
        """Fold Falco ``http_output`` events in; ``selectors`` (agent -> matchLabels) attribute
        events that carry pod labels (see ``falco.agent_of``)."""
        stats = IngestStats()
        found: list[FalcoFacts] = []
        for n, event in enumerate(events, first_line):
            try:
                found.append(facts(event, selectors))
            except ValueError as exc:
                stats.rejected += 1
                if len(stats.errors) < MAX_ERRORS:
                    stats.errors.append(f"{where}:{n}: {exc}")
        stats.records = len(found)
        with self._lock, _transaction(self.conn) as c:
            c.executemany(schema.UPSERT_FALCO_DAY, _falco_day_rows(found))
            c.executemany(schema.UPSERT_FALCO_SIG, _falco_sig_rows(found))
            c.executemany(schema.UPSERT_PROC, _proc_rows(found))
            c.executemany(schema.UPSERT_FALCO_HOURS, _falco_hour_rows(found))
            c.executemany(schema.UPSERT_FALCO_SIG_DAY, _falco_sig_day_rows(found))
            if mark is not None:
                c.execute(schema.UPSERT_INGESTED, mark(first_line - 1 + len(found)
                                                       + stats.rejected))
        return stats


def _upgrade(path: str) -> None:
    """Add the tables of a newer schema to an older store before reading it (the tables only
    ever grow; older data simply has no rows in them)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    if version >= schema.SCHEMA_VERSION:
        return
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            _migrate(conn)
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        raise FileNotFoundError(f"store {path!r} has schema {version}, older than this corral's "
                                f"{schema.SCHEMA_VERSION}, and cannot be upgraded ({exc}); "
                                "open it once with `corral learn` where it is writable") from None


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > schema.SCHEMA_VERSION:
        raise RuntimeError(f"store schema {version} is newer than this corral "
                           f"({schema.SCHEMA_VERSION}); upgrade corral")
    with _transaction(conn) as c:
        for ddl in schema.DDL:
            c.execute(ddl)
        c.execute(f"PRAGMA user_version={schema.SCHEMA_VERSION}")


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.conn.execute("COMMIT" if et is None else "ROLLBACK")


def _span(into: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], t: str) -> list[Any]:
    row = into.get(key)
    if row is None:
        row = into[key] = [0, t, t]
    row[0] += 1
    row[1], row[2] = min(row[1], t), max(row[2], t)
    return row


def _falco_day_rows(found: list[FalcoFacts]) -> Iterator[tuple[Any, ...]]:
    rows: dict[tuple[Any, ...], list[Any]] = {}
    prio: dict[tuple[Any, ...], str] = {}
    for f in found:
        key = (f.agent, f.rule, f.day)
        _span(rows, key, f.time)
        prio[key] = f.priority
    return ((*k, prio[k], *v) for k, v in rows.items())


def _falco_sig_rows(found: list[FalcoFacts]) -> Iterator[tuple[Any, ...]]:
    rows: dict[tuple[Any, ...], list[Any]] = {}
    for f in found:
        _span(rows, (f.agent, f.rule, f.proc, f.parent, f.file, f.image), f.time)
    return ((*k, *v) for k, v in rows.items())


def _proc_rows(found: list[FalcoFacts]) -> Iterator[tuple[Any, ...]]:
    rows: dict[tuple[Any, ...], list[Any]] = {}
    for f in found:
        if f.proc:
            _span(rows, (f.agent, f.proc), f.time)
    return ((*k, *v) for k, v in rows.items())


def _falco_hour_rows(found: list[FalcoFacts]) -> Iterator[tuple[Any, ...]]:
    rows: dict[tuple[Any, ...], int] = {}
    for f in found:
        key = (f.agent, f.rule, f.day)
        rows[key] = rows.get(key, 0) | 1 << int(f.time[11:13])
    return ((*k, v) for k, v in rows.items())


def _falco_sig_day_rows(found: list[FalcoFacts]) -> Iterator[tuple[Any, ...]]:
    rows: dict[tuple[Any, ...], int] = {}
    for f in found:
        key = (f.agent, f.rule, f.day, f.proc, f.parent, f.file, f.image)
        rows[key] = rows.get(key, 0) + 1
    return ((*k, v) for k, v in rows.items())
