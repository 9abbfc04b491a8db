"""The processor chain over real parsing, the real SQLite store and mock sinks, on a hand-moved
clock: enrichment, dedup, grouping windows, Falco+gateway correlation, threshold, routing."""

from __future__ import annotations

from typing import Any

import orjson

from corral.control.app import ControlPlane
from corral.control.sinks.base import MockSink
from corral.store.aggregates import AggregateStore
from tests.control.conftest import Clock, PlaneFactory, access, body, falco_event, policy, run

SINKS = """\
response:
  sinks:
    - {name: all, type: webhook, url: "http://127.0.0.1:9/", route: {min_severity: debug}}
    - {name: pager, type: webhook, url: "http://127.0.0.1:9/", route: {min_severity: error}}
    - {name: shells, type: webhook, url: "http://127.0.0.1:9/",
       route: {min_severity: debug, tags: [shell]}}
  quarantine: {min_severity: critical}
"""


def _sinks() -> dict[str, MockSink]:
    return {n: MockSink(n) for n in ("all", "pager", "shells")}


async def _drain(plane: ControlPlane) -> None:
    plane.tick()
    for d in plane.deliverers.values():
        while await d.step():
            pass


def _incidents(plane: ControlPlane, **kw: Any) -> list[dict[str, Any]]:
    return plane.store.incidents(**kw)


def test_falco_alert_enriched_with_agent_from_pod_labels(make_plane: PlaneFactory) -> None:
    async def go() -> None:
        plane = make_plane()
        await plane.start(background=False)
        assert plane.ingest_falco(body(falco_event())).accepted == 1
        assert plane.ingest_falco(body(falco_event(
            pod="coder-1", labels=None))).accepted == 1
        ev = falco_event(pod="coder-2", labels=None)
        ev["output_fields"]["k8s.pod.label[app]"] = "coding-agent"
        plane.ingest_falco(body(ev))
        other_ns = falco_event(pod="x-1", ns="default")  # right labels, wrong namespace
        plane.ingest_falco(body(other_ns))
        plane.tick()
        by_pod = {i["pod"]: i["agent"] for i in _incidents(plane)}
        assert by_pod == {"research-7d9f": "research", "coder-1": None, "coder-2": "coder",
                          "x-1": None}
        await plane.aclose()
    run(go())


def test_identical_alerts_are_one_incident_with_a_count(make_plane: PlaneFactory,
                                                        clock: Clock) -> None:
    async def go() -> None:
        plane = make_plane(policy(SINKS), sinks=_sinks())
        await plane.start(background=False)
        for _ in range(5):
            plane.ingest_falco(body(falco_event()))
            clock.advance(0.5)
        plane.ingest_falco(body(falco_event(proc="sh")))  # same rule, new process: a sample
        await _drain(plane)
        [inc] = _incidents(plane)
        assert inc["count"] == 6
        assert [s["fields"]["proc.name"] for s in inc["samples"]] == ["bash", "sh"]
        notices = plane.deliverers["all"].sink.received  # type: ignore[attr-defined]
        assert [n["kind"] for n in notices] == ["opened"]
        await plane.aclose()
    run(go())


def test_window_splits_incidents_and_sweep_closes_them(make_plane: PlaneFactory,
                                                       clock: Clock) -> None:
    async def go() -> None:
        sinks = _sinks()
        plane = make_plane(policy(SINKS), sinks=sinks)
        await plane.start(background=False)
        plane.ingest_falco(body(falco_event()))
        clock.advance(299)
        plane.ingest_falco(body(falco_event()))  # inside the 300 s window: same incident
        clock.advance(301)
        await _drain(plane)  # the sweep closes it
        plane.ingest_falco(body(falco_event()))  # a new one
        await _drain(plane)
        rows = sorted(_incidents(plane), key=lambda r: r["first_seen"])
        assert [(r["count"], r["status"]) for r in rows] == [(2, "closed"), (1, "open")]
        kinds = [(n["kind"], n["incident"]["count"]) for n in sinks["all"].received]
        assert kinds == [("opened", 1), ("closed", 2), ("opened", 1)]
        await plane.aclose()
    run(go())


def test_falco_alert_then_gateway_denial_is_one_higher_incident(make_plane: PlaneFactory,
                                                                 clock: Clock) -> None:
    async def go() -> None:
        sinks = _sinks()
        plane = make_plane(policy(SINKS), sinks=sinks)
        await plane.start(background=False)
        plane.ingest_falco(body(falco_event(priority="Warning")))
        clock.advance(30)
        assert plane.ingest_gateway(body(access())).accepted == 1
        await _drain(plane)
        [inc] = _incidents(plane)
        assert inc["correlated"] and inc["severity"] == "error"
        assert inc["sources"] == ["falco", "gateway"] and inc["count"] == 2
        assert [n["kind"] for n in sinks["all"].received] == ["opened", "escalated"]
        assert [n["kind"] for n in sinks["pager"].received] == ["escalated"]
        await plane.aclose()
    run(go())


def test_gateway_denial_then_falco_alert_merges(make_plane: PlaneFactory, clock: Clock) -> None:
    async def go() -> None:
        plane = make_plane(policy(SINKS), sinks=_sinks())
        await plane.start(background=False)
        plane.ingest_gateway(body(access(), access(host="paste.example")))
        clock.advance(59)
        plane.ingest_falco(body(falco_event(priority="Error")))
        clock.advance(1)
        plane.ingest_gateway(body(access()))  # joins the correlated incident
        plane.tick()
        rows = {r["status"]: r for r in _incidents(plane)}
        assert set(rows) == {"open", "merged"}
        inc = rows["open"]
        assert inc["severity"] == "critical" and inc["correlated"] and inc["count"] == 4
        assert rows["merged"]["merged_into"] == inc["id"]
        await _drain(plane)
        notices = [(n["kind"], n["incident"]["status"], n["incident"]["id"],
                    n["incident"]["severity"])
                   for n in plane.deliverers["all"].sink.received]  # type: ignore[attr-defined]
        gw_id = rows["merged"]["id"]
        assert notices == [("opened", "open", gw_id, "warning"),
                           ("opened", "open", inc["id"], "critical"),  # born correlated
                           ("closed", "merged", gw_id, "warning")]  # receivers resolve it
        await plane.aclose()
    run(go())


def test_no_correlation_beyond_a_minute_or_across_agents(make_plane: PlaneFactory,
                                                         clock: Clock) -> None:
    async def go() -> None:
        plane = make_plane(aggregates=True)
        await plane.start(background=False)
        plane.ingest_falco(body(falco_event()))
        clock.advance(61)
        plane.ingest_gateway(body(access()))
        plane.ingest_gateway(body(access(agent="coder")))
        plane.tick()
        rows = _incidents(plane)
        assert len(rows) == 3 and not any(r["correlated"] for r in rows)
        assert plane.behaviour is not None
        await plane.settle()
        with AggregateStore.open(plane.behaviour.db, readonly=True) as store:
            falco = store.conn.execute("SELECT agent, count FROM falco_day").fetchall()
        assert falco == [("research", 1)]
        await plane.aclose()
    run(go())


def test_threshold_triggers_quarantine_once(make_plane: PlaneFactory, tmp_path: Any) -> None:
    async def go() -> None:
        overlay = tmp_path / "overlay.json"
        from corral.control.response import ResponseSettings
        plane = make_plane(response=ResponseSettings(overlay_file=overlay))
        await plane.start(background=False)
        plane.ingest_falco(body(falco_event(priority="Warning")))
        plane.tick()
        assert plane.store.quarantined() == {}
        plane.ingest_falco(body(falco_event(rule="Read service account token",
                                            priority="Critical")))
        plane.ingest_falco(body(falco_event(rule="Read service account token",
                                            priority="Critical")))
        plane.ingest_falco(body(falco_event(rule="Contact K8S API server",  # 2nd incident
                                            priority="Critical")))
        plane.tick()
        for t in list(plane._tasks):
            await t
        assert set(plane.store.quarantined()) == {"research"}
        assert orjson.loads(overlay.read_bytes()) == {"quarantined": ["research"]}
        actions = [a["action"] for a in plane.store.actions()]
        assert actions == ["overlay_quarantine", "quarantine"]
        await plane.release("research")
        assert orjson.loads(overlay.read_bytes()) == {"quarantined": []}
        assert plane.store.quarantined() == {}
        await plane.aclose()
    run(go())


def test_quarantine_echo_after_release_does_not_quarantine_again(
        make_plane: PlaneFactory, tmp_path: Any) -> None:
    """The gateway's refusals *because of* a quarantine are tailed a moment late: one arriving
    after a release joins the still-open critical incident, and must not re-quarantine the agent
    (it did, 1 run in ~10 of the local-stack test). New evidence still does."""
    async def go() -> None:
        from corral.control.response import ResponseSettings
        plane = make_plane(response=ResponseSettings(overlay_file=tmp_path / "overlay.json"))
        await plane.start(background=False)

        async def settle() -> None:
            plane.tick()
            for t in list(plane._tasks):
                await t

        plane.ingest_falco(body(falco_event(rule="Read service account token",
                                            priority="Critical")))
        await settle()
        assert set(plane.store.quarantined()) == {"research"}
        await plane.release("research")
        plane.ingest_gateway(body(access(reason="quarantined")))
        await settle()
        assert plane.store.quarantined() == {}
        plane.ingest_falco(body(falco_event(rule="Read service account token",
                                            priority="Critical", proc="sh")))
        await settle()
        assert set(plane.store.quarantined()) == {"research"}
        await plane.aclose()
    run(go())


def test_batch_with_good_and_bad_items_keeps_every_good_one(make_plane: PlaneFactory) -> None:
    async def go() -> None:
        plane = make_plane(known_rules=frozenset({"Terminal shell in container"}))
        await plane.start(background=False)
        no_rule = falco_event()
        del no_rule["rule"]
        bad_prio = falco_event(priority="Loud")
        unknown = falco_event(rule="Some other rule")
        internal = {"output": "Falco internal: syscall event drop", "priority": "Debug",
                    "rule": "Falco internal: syscall event drop", "source": "internal",
                    "time": "2026-11-26T12:00:00.000000000Z", "hostname": "node-1",
                    "output_fields": {"n_drops": 12}}
        raw = b"\n".join([orjson.dumps(falco_event()), b"{not json", orjson.dumps(no_rule),
                          orjson.dumps(bad_prio), b"[1, 2]", orjson.dumps(unknown),
                          orjson.dumps(internal), orjson.dumps(falco_event(pod="p2"))])
        result = plane.ingest_falco(raw)
        assert result.accepted == 3
        reasons = [r["reason"] for r in result.rejected]
        assert reasons == ["malformed_json", "missing_field", "bad_field", "not_an_object",
                           "unknown_rule"]
        assert "rule: required field is missing" in result.rejected[1]["error"]
        plane.tick()
        assert sum(r["count"] for r in _incidents(plane)) == 3
        text = plane.metrics.render().decode()
        assert 'corral_control_rejected_total{reason="unknown_rule"} 1.0' in text
        assert 'corral_control_events_total{source="internal"} 1.0' in text
        await plane.aclose()
    run(go())


def test_gateway_lines_allows_counted_denials_grouped(make_plane: PlaneFactory) -> None:
    async def go() -> None:
        plane = make_plane(aggregates=True)
        await plane.start(background=False)
        missing = access()
        del missing["agent"]
        res = plane.ingest_gateway(body(access("allow"), access("allow"), access(), missing,
                                        access("would_deny", agent="coder")))
        assert res.accepted == 4 and res.rejected[0]["reason"] == "missing_field"
        plane.tick()
        rows = {r["agent"]: r for r in _incidents(plane)}
        assert rows["research"]["rule"] == "gateway denial"
        assert rows["coder"]["severity"] == "notice"
        agents = {a["name"]: a for a in plane.agents()}
        assert agents["research"]["events"] == {"gateway": 1}
        assert plane.behaviour is not None
        await plane.settle()
        with AggregateStore.open(plane.behaviour.db, readonly=True) as store:
            rows = store.conn.execute(
                "SELECT agent, host, requests FROM dest_total ORDER BY agent").fetchall()
        assert rows == [("coder", "evil.example", 1), ("research", "evil.example", 3)]
        await plane.aclose()
    run(go())


def test_open_incidents_survive_a_restart(make_plane: PlaneFactory, tmp_path: Any,
                                          clock: Clock) -> None:
    async def go() -> None:
        plane = make_plane()
        await plane.start(background=False)
        plane.ingest_falco(body(falco_event()))
        await plane.aclose()
        again = make_plane()
        await again.start(background=False)
        clock.advance(10)
        again.ingest_falco(body(falco_event()))
        again.tick()
        [inc] = _incidents(again)
        assert inc["count"] == 2
        await again.aclose()
    run(go())


def test_behaviour_worker_restarts_after_dying(make_plane: PlaneFactory) -> None:
    async def go() -> None:
        import asyncio
        plane = make_plane(aggregates=True)
        await plane.start(background=False)
        plane.ingest_falco(body(falco_event()))
        await plane.settle()
        assert plane.behaviour is not None and plane.behaviour._proc is not None
        plane.behaviour._proc.kill()
        for _ in range(100):
            if plane.behaviour.dead():
                break
            await asyncio.sleep(0.05)
        plane.tick()  # notices and restarts it
        for t in list(plane._tasks):
            await t
        plane.ingest_falco(body(falco_event()))
        await plane.settle()
        with AggregateStore.open(plane.behaviour.db, readonly=True) as store:
            assert store.conn.execute("SELECT SUM(count) FROM falco_day").fetchone()[0] == 2
        await plane.aclose()
    run(go())
