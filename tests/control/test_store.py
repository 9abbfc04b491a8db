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
