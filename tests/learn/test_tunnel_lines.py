"""The store counts a tunnel's lines (open, progress, close) once: one request per flow, each
byte once, whatever batches the lines arrive in; a line naming an unknown ``event`` is refused
by line, and a refused key gives back every line it held."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.model import records as rec
from corral.store.aggregates import AggregateStore
from tests.learn.test_store import access


def tunnel(flow: str, deltas: list[tuple[int, int]], **over: Any) -> list[dict[str, Any]]:
    """A tunnel's lines: open with the first delta, a progress line per middle one, close."""
    events = [rec.EVENT_OPEN] + [rec.EVENT_PROGRESS] * (len(deltas) - 2) + [rec.EVENT_CLOSE]
    return [access(**{rec.EVENT: event, rec.FLOW: flow, rec.BYTES_UP: up, rec.BYTES_DOWN: down,
                      rec.TIME: f"2026-11-20T10:{i:02d}:00.000Z", **over})
            for i, (event, (up, down)) in enumerate(zip(events, deltas, strict=True))]


def totals(db: Path) -> list[tuple[Any, ...]]:
    with AggregateStore.open(db, readonly=True) as store:
        return store.conn.execute(
            "SELECT requests, bytes_up, bytes_down, n_allow, first_seen, last_seen "
            "FROM dest_total").fetchall()


@settings(max_examples=25, deadline=None, database=None)
@given(flows=st.lists(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)),
                               min_size=2, max_size=6), min_size=1, max_size=4),
       cut=st.integers(1, 20))
def test_any_tunnels_in_any_batches_count_each_request_and_byte_once(
        tmp_path_factory: Any, flows: list[list[tuple[int, int]]], cut: int) -> None:
    lines = [orjson.dumps(x) for i, deltas in enumerate(flows) for x in tunnel(f"f-{i}", deltas)]
    db = tmp_path_factory.mktemp("tunnels") / "s.db"
    with AggregateStore.open(db) as store:
        for start in range(0, len(lines), cut):
            assert store.ingest_access_lines(lines[start:start + cut]).rejected == 0
    last = max(len(deltas) for deltas in flows) - 1
    assert totals(db) == [(len(flows), sum(u for d in flows for u, _ in d),
                           sum(w for d in flows for _, w in d), len(flows),
                           "2026-11-20T10:00:00.000Z", f"2026-11-20T10:{last:02d}:00.000Z")]


def test_unknown_events_and_refused_keys_are_named_by_line(tmp_path: Path) -> None:
    lines = [orjson.dumps(x) for x in [
        access(**{rec.EVENT: "middle"}),
        *tunnel("f-1", [(0, 39), (5, 6), (7, 8)], **{rec.AGENT: ""}),
        *tunnel("f-2", [(0, 39), (5, 6)]),
    ]]
    with AggregateStore.open(tmp_path / "s.db") as store:
        stats = store.ingest_access_lines(lines, where="gw.log")
    assert (stats.records, stats.rejected) == (2, 4)
    assert "gw.log:1: malformed access record: field 'event': expected one of request, open, " \
           "progress, close, got 'middle'" in stats.errors
    assert any(e.startswith("gw.log:2: field 'agent'") for e in stats.errors)
    assert totals(tmp_path / "s.db") == [(1, 5, 45, 1, "2026-11-20T10:00:00.000Z",
                                          "2026-11-20T10:01:00.000Z")]
