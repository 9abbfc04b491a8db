"""The incident store writes an incident's samples apart from the row it rewrites on every
change (most of an incident's bytes, written once each): what it reads back is the whole
incident, also from rows of the older format that kept the samples in the doc."""

from __future__ import annotations

from pathlib import Path

import orjson

from corral.control.events import Event
from corral.control.incidents import Incident
from corral.control.store import IncidentStore


def _event(n: int) -> Event:
    return Event(source="falco", time=float(n), rule="r", severity="warning", output=f"o{n}",
                 pod="p", namespace="ns", agent="a")


def test_samples_are_written_when_new_and_read_back_whole(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "i.db")
    inc = Incident(id="inc-1", agent="a", subject="pod:ns/p", pod="p", namespace="ns", rule="r",
                   severity="warning", first_seen=1.0, last_seen=1.0)
    for n in range(8):
        inc.add(_event(n), float(n))
        store.write([inc], {}, float(n))
    assert inc.samples_stored == 5
    doc = store.incident("inc-1")
    assert doc is not None and doc["count"] == 8
    assert [s["output"] for s in doc["samples"]] == ["o0", "o1", "o2", "o3", "o4"]
    assert store.incidents()[0]["samples"] == doc["samples"]
    store.close()
    again = IncidentStore(tmp_path / "i.db").open_incidents()
    assert again[0].samples == doc["samples"] and again[0].samples_stored == 5


def test_rows_of_the_older_format_keep_their_samples(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "i.db")
    inc = Incident(id="inc-old", agent="a", subject="s", pod=None, namespace=None, rule="r",
                   severity="warning", first_seen=1.0, last_seen=1.0, count=1,
                   samples=[{"output": "kept"}])
    with store._tx() as c:  # as the previous version wrote it: samples inside the doc
        c.execute("INSERT INTO incidents VALUES (?,?,?,?,?,?,?)",
                  (inc.id, "a", "warning", "open", 1.0, 1.0, orjson.dumps(inc.record())))
    assert store.incident("inc-old")["samples"] == [{"output": "kept"}]  # type: ignore[index]
    assert store.open_incidents()[0].samples == [{"output": "kept"}]


def test_journal_replays_what_was_acknowledged_but_not_drained(tmp_path: Path) -> None:
    from corral.control.app import ControlPlane, Settings
    from tests.control.conftest import access, body, falco_event, policy, run

    async def go() -> None:
        first = ControlPlane(policy(), Settings(state_dir=tmp_path, aggregates=False))
        await first.start(background=False)
        for n in range(3):
            first.ingest_falco(body(falco_event(output=f"shell {n}")))
        first.ingest_gateway(body(access()))
        first.commit()  # what a 2xx waits for; no drain follows: the process "dies"
        with (tmp_path / "ingest.journal").open("ab") as f:
            f.write(b'F{"rule":"cut by the crash"')  # never acknowledged
        assert first.store.incidents() == []
        assert first._session is not None
        await first._session.close()  # let go of it without the drain aclose() would run
        first.store.close()
        first.journal.close()
        second = ControlPlane(policy(), Settings(state_dir=tmp_path, aggregates=False))
        await second.start(background=False)  # replays, drains, empties the journal
        counts = second.store.event_counts()
        assert counts["research"] == {"falco": 3, "gateway": 1}
        assert (tmp_path / "ingest.journal").stat().st_size == 0
        await second.aclose()
    run(go())
