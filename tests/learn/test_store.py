"""The aggregate store: what one ingest writes, that batches merge exactly, that bad lines are
named and skipped, Falco attribution, and ``corral learn`` on files, gzip and stdin."""

from __future__ import annotations

import gzip
import io
import itertools
import sqlite3
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.cli import main
from corral.learn.ingest import ingest_source
from corral.model import records as rec
from corral.store.access import day_number
from corral.store.aggregates import AggregateStore
from corral.store.falco import UNATTRIBUTED, agent_of, pod_labels
from tests.learn import scenario

TABLES = ("dest_day", "dest_total", "agent_day", "rule_use", "dest_pod", "tld_seen",
          "proc_total", "falco_day", "falco_sig", "dest_hours", "agent_hours", "falco_hours",
          "falco_sig_day", "rule_host")


def access(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        rec.TIME: "2026-11-20T10:00:00.000Z", rec.KIND: "access", rec.AGENT: "research",
        rec.CLIENT: "10.0.0.5:40001", rec.METHOD: "CONNECT", rec.HOST: "api.openai.com",
        rec.PORT: 443, rec.DECISION: "allow", rec.REASON: "allowed_by_rule",
        rec.RULE: "api.openai.com", rec.BYTES_UP: 100, rec.BYTES_DOWN: 1000,
    }
    r.update(over)
    return r


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in TABLES}
    finally:
        conn.close()


def test_one_batch_fills_every_aggregate(tmp_path: Path) -> None:
    recs = [
        access(),
        access(**{rec.TIME: "2026-11-20T12:00:00.000Z", rec.CLIENT: "10.0.0.6:50000",
                  rec.BYTES_UP: 50}),
        access(**{rec.TIME: "2026-11-21T09:00:00.000Z", rec.DECISION: "deny",
                  rec.HOST: "pastebin.com", rec.RULE: None, rec.BYTES_UP: 0, rec.BYTES_DOWN: 0}),
        access(**{rec.TIME: "2026-11-21T08:00:00.000Z", rec.DECISION: "would_deny",
                  rec.AGENT: "coder", rec.HOST: "crates.io", rec.RULE: None,
                  rec.CLIENT: "[fd00::5]:41000"}),
    ]
    with AggregateStore.open(tmp_path / "s.db") as store:
        stats = store.ingest_access(recs)
    assert (stats.records, stats.rejected) == (4, 0)
    t = dump(tmp_path / "s.db")
    day = day_number("2026-11-20")
    assert t["dest_day"] == [
        ("coder", "crates.io", 443, day + 1, 1, 100, 1000, 0, 0, 1, "2026-11-21T08:00:00.000Z",
         "2026-11-21T08:00:00.000Z"),
        ("research", "api.openai.com", 443, day, 2, 150, 2000, 2, 0, 0,
         "2026-11-20T10:00:00.000Z", "2026-11-20T12:00:00.000Z"),
        ("research", "pastebin.com", 443, day + 1, 1, 0, 0, 0, 1, 0, "2026-11-21T09:00:00.000Z",
         "2026-11-21T09:00:00.000Z"),
    ]
    assert [r[:4] for r in t["agent_day"]] == [("coder", day + 1, 1, 100),
                                               ("research", day, 2, 150),
                                               ("research", day + 1, 1, 0)]
    assert t["rule_use"] == [("research", "api.openai.com", "allow", 2,
                              "2026-11-20T10:00:00.000Z", "2026-11-20T12:00:00.000Z")]
    assert t["dest_pod"] == [
        ("coder", "crates.io", 443, "fd00::5", day + 1, day + 1),
        ("research", "api.openai.com", 443, "10.0.0.5", day, day),
        ("research", "api.openai.com", 443, "10.0.0.6", day, day),
        ("research", "pastebin.com", 443, "10.0.0.5", day + 1, day + 1),
    ]
    assert [r[0] for r in t["tld_seen"]] == ["com", "io"]


def test_batches_merge_to_the_same_aggregates(tmp_path: Path) -> None:
    recs = scenario.access_records()[:6000]
    lines = [orjson.dumps(r) for r in recs]
    with AggregateStore.open(tmp_path / "one.db") as store:
        store.ingest_access_lines(lines)
    with AggregateStore.open(tmp_path / "many.db") as store:
        for i in range(0, len(lines), 777):
            store.ingest_access_lines(lines[i:i + 777])
    # a second writer on the same file (WAL): what `corral serve` and `corral learn` may do
    with AggregateStore.open(tmp_path / "split.db") as a, \
            AggregateStore.open(tmp_path / "split.db") as b:
        a.ingest_access(recs[:3000])
        b.ingest_access(recs[3000:])
    assert dump(tmp_path / "one.db") == dump(tmp_path / "many.db") == dump(tmp_path / "split.db")


def test_bad_lines_are_named_and_skipped(tmp_path: Path) -> None:
    lines = [
        orjson.dumps(access()),
        b'{"time": "2026-11-20T10:00:00Z", "agent"',
        orjson.dumps({k: v for k, v in access().items() if k != rec.HOST}),
        orjson.dumps(access(**{rec.DECISION: "maybe"})),
        orjson.dumps(access(**{rec.PORT: "443"})),
        orjson.dumps(access(**{rec.BYTES_UP: -5})),
        orjson.dumps(access(**{rec.TIME: "yesterday"})),
        b"",
        orjson.dumps({"kind": "reload", "time": "2026-11-20T10:00:00Z"}),
        orjson.dumps(access(**{rec.TIME: "2026-11-21T01:30:00+02:00"})),
    ]
    with AggregateStore.open(tmp_path / "s.db") as store:
        stats = store.ingest_access_lines(lines, where="gw.log")
    assert (stats.records, stats.skipped, stats.rejected) == (2, 1, 6)
    joined = "\n".join(stats.errors)
    for expected in ("gw.log:2: not a JSON object", "gw.log:3: missing field 'host'",
                     "gw.log:4: field 'decision': expected one of allow, deny, would_deny",
                     "gw.log:5: field 'port': expected a port number",
                     "gw.log:6: fields 'bytes_up'/'bytes_down'", "gw.log:7: malformed"):
        assert expected in joined
    # +02:00 at 01:30 is the previous UTC day
    days = [r[3] for r in dump(tmp_path / "s.db")["dest_day"]]
    assert days == [day_number("2026-11-20")]
    assert dump(tmp_path / "s.db")["dest_day"][0][4] == 2


def test_falco_attribution_order() -> None:
    selectors = {"coder": {"app": "coding-agent"}, "research": {"app": "research-agent"}}
    by_labels = {"rule": "Terminal shell in container",
                 "output_fields": {"k8s.pod.labels": "app:coding-agent, tier:web"}}
    assert agent_of(by_labels, selectors) == "coder"
    bracket = {"rule": "x", "output_fields": {"k8s.pod.label[app]": "research-agent"}}
    assert agent_of(bracket, selectors) == "research"
    assert agent_of({"rule": "corral: research: unexpected process"}) == "research"
    assert agent_of({"rule": "y", "tags": ["corral.agent:coder"]}) == "coder"
    assert agent_of({"rule": "Terminal shell in container"}, selectors) == UNATTRIBUTED
    assert pod_labels({"k8s.pod.labels": "(a:b,c:d)"}) == {"a": "b", "c": "d"}


def test_falco_ingest_keeps_processes_and_signatures(tmp_path: Path) -> None:
    events = scenario.falco_events()
    with AggregateStore.open(tmp_path / "s.db") as store:
        stats = store.ingest_falco([*events, {"rule": "no time"}, "not an event"],
                                   selectors={"coder": {"app": "coding-agent"}})
    assert stats.records == len(events) and stats.rejected == 2
    t = dump(tmp_path / "s.db")
    assert {(r[0], r[1]) for r in t["proc_total"]} >= {("coder", "cc1"), ("coder", "bash"),
                                                       ("research", "curl")}
    shells = [r for r in t["falco_day"] if r[1] == "Terminal shell in container"]
    assert {r[0] for r in shells} == {"coder"}
    assert sum(r[4] for r in shells) == sum(e["rule"] == "Terminal shell in container"
                                            for e in events)


def test_readonly_open_of_a_missing_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="corral learn"):
        AggregateStore.open(tmp_path / "nope.db", readonly=True)


def test_learn_cli_reads_files_gzip_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    recs = scenario.access_records()[:300]
    body = b"\n".join(orjson.dumps(r) for r in recs) + b"\n"
    (tmp_path / "a.log.gz").write_bytes(gzip.compress(body))
    fake = io.TextIOWrapper(io.BytesIO(body))
    monkeypatch.setattr(sys, "stdin", fake)
    db = tmp_path / "s.db"
    assert main(["learn", str(tmp_path / "a.log.gz"), "-", "--store", str(db), "-o",
                 "json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    # stdin carries the same lines as the gzip file: recognised, not counted twice
    assert [(s["kind"], s["records"], s["already_ingested"]) for s in out["sources"]] == [
        ("access", 300, 0), ("access", 0, 300)]
    assert sum(r[2] for r in dump(db)["agent_day"]) == 300
    (tmp_path / "junk.log").write_text("not json\nstill not\n")
    assert main(["learn", str(tmp_path / "junk.log"), "--store", str(db)]) == 2
    assert main(["learn", str(tmp_path / "missing.log"), "--store", str(db)]) == 2


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=399), max_size=6, unique=True))
def test_any_split_of_the_input_gives_the_same_store(tmp_path_factory: pytest.TempPathFactory,
                                                     cuts: list[int]) -> None:
    """Aggregation is exact: however the log is cut into ingest calls, the tables agree, and
    request and byte totals equal the sums over the records."""
    recs = _SAMPLE
    root = tmp_path_factory.mktemp("split")
    with AggregateStore.open(root / "whole.db") as store:
        store.ingest_access(recs)
    bounds = [0, *sorted(cuts), len(recs)]
    with AggregateStore.open(root / "parts.db") as store:
        for lo, hi in itertools.pairwise(bounds):
            store.ingest_access_lines([orjson.dumps(r) for r in recs[lo:hi]])
    whole, parts = dump(root / "whole.db"), dump(root / "parts.db")
    assert whole == parts
    assert sum(r[3] for r in whole["dest_total"]) == len(recs)
    assert sum(r[5] for r in whole["dest_day"]) == sum(r[rec.BYTES_UP] for r in recs)


_SAMPLE = scenario.access_records(seed=5)[:400]


def _lines(recs: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in recs)


def test_ingest_is_idempotent_across_rereads_growth_and_rotation(tmp_path: Path) -> None:
    """The same file twice, the file after it grew, and its gzip'd rotation all fold each line
    in exactly once: the store equals one ingest of the whole log."""
    recs = scenario.access_records(seed=7)[:600]
    with AggregateStore.open(tmp_path / "once.db") as store:
        store.ingest_access(recs)
    log = tmp_path / "access.log"
    log.write_bytes(_lines(recs[:250]))
    db = tmp_path / "s.db"
    with AggregateStore.open(db) as store:
        assert ingest_source(store, str(log)).stats.records == 250
        again = ingest_source(store, str(log)).stats
        assert (again.records, again.already) == (0, 250)
        log.write_bytes(_lines(recs[:400]))  # the gateway appended 150 lines
        grown = ingest_source(store, str(log)).stats
        assert (grown.records, grown.already) == (150, 250)
        rotated = tmp_path / "access.log.1.gz"  # rotation: renamed, compressed, 200 more lines
        rotated.write_bytes(gzip.compress(_lines(recs[:600])))
        assert ingest_source(store, str(rotated)).stats.records == 200
        assert ingest_source(store, str(log)).stats.records == 0
    assert dump(db) == dump(tmp_path / "once.db")


def test_learn_of_empty_input_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`corral learn < /dev/null`: nothing could be ingested, as the help says (exit 2)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["learn", "--store", str(tmp_path / "s.db")]) == 2


def test_a_store_of_the_previous_schema_is_upgraded_on_read(tmp_path: Path) -> None:
    """A store written before the behaviour tables existed is still reviewable."""
    db = tmp_path / "old.db"
    with AggregateStore.open(db) as store:
        store.ingest_access([access()])
    conn = sqlite3.connect(db)
    for table in ("dest_hours", "agent_hours", "falco_hours", "falco_sig_day", "ingested",
                  "rule_host"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with AggregateStore.open(db, readonly=True) as store:
        assert store.conn.execute("SELECT count(*) FROM dest_hours").fetchone() == (0,)
        assert store.conn.execute("SELECT count(*) FROM dest_day").fetchone() == (1,)


class _Pipe(io.BytesIO):
    """stdin from a pipe: no seeking, no telling."""

    def seekable(self) -> bool:
        return False


def test_a_pipe_is_recognised_by_its_counted_lines(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    recs = scenario.access_records(seed=9)[:200]
    db = tmp_path / "s.db"
    seen = []
    for body in (_lines(recs[:120]), _lines(recs)):  # the second pipe carries 80 more lines
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(_Pipe(body)))
        with AggregateStore.open(db) as store:
            got = ingest_source(store, "-").stats
        seen.append((got.records, got.already))
    assert seen == [(120, 0), (80, 120)]


def test_lines_recorded_live_by_serve_are_not_learned_again(tmp_path: Path) -> None:
    """`corral serve` marks the agent-days it records; `corral learn` of the gateway's log
    file leaves those alone and folds in only the other agent-days."""
    served = [access(), access(**{rec.TIME: "2026-11-20T11:00:00.000Z"})]
    other = [access(**{rec.AGENT: "coder"}), access(**{rec.TIME: "2026-11-21T09:00:00.000Z"})]
    log = tmp_path / "gateway.log"
    log.write_bytes(_lines([*served, *other]))
    db = tmp_path / "s.db"
    with AggregateStore.open(db) as store:
        store.ingest_access_lines([orjson.dumps(r) for r in served], where="gateway", live=True)
        got = ingest_source(store, str(log)).stats
    assert (got.records, got.live) == (2, 2)
    assert sum(r[2] for r in dump(db)["agent_day"]) == 4  # requests: each line once
