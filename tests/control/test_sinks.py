"""Every sink against a real local receiver of its API, and the disk queue across an outage and
a restart: nothing lost, nothing delivered twice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from corral.control.app import ControlPlane
from corral.control.sinks.base import MockSink, SinkError
from corral.control.sinks.deliver import Deliverer
from corral.control.sinks.queue import DiskQueue
from tests.control import receivers as rx
from tests.control.conftest import Clock, PlaneFactory, access, body, falco_event, policy, run


async def deliver_all(plane: ControlPlane, rounds: int = 20) -> None:
    plane.tick()
    for d in plane.deliverers.values():
        for _ in range(rounds):
            if not await d.step():
                break


def _sinks_policy(port: int, udp: int, tcp: int) -> str:
    url = f"http://127.0.0.1:{port}"
    return f"""\
response:
  sinks:
    - {{name: hook, type: webhook, url: "{url}/hook", route: {{min_severity: debug}}}}
    - {{name: slack, type: slack, url: "{url}/services/T000/B000/XXXX",
       route: {{min_severity: error}}}}
    - {{name: splunk, type: splunk, url: "{url}", token_env: CORRAL_TEST_HEC, index: sec,
       send: events, route: {{min_severity: debug}}}}
    - {{name: es, type: elasticsearch, url: "{url}", index: corral-events, send: events,
       route: {{min_severity: debug}}}}
    - {{name: loki, type: loki, url: "{url}", route: {{min_severity: debug}}}}
    - {{name: am, type: alertmanager, url: "{url}", route: {{min_severity: debug,
       tags: [shell, correlated]}}}}
    - {{name: sysu, type: syslog, host: 127.0.0.1, port: {udp}, transport: udp,
       route: {{min_severity: debug}}}}
    - {{name: syst, type: syslog, host: 127.0.0.1, port: {tcp}, transport: tcp,
       route: {{min_severity: debug}}}}
"""


def test_every_sink_speaks_its_api(make_plane: PlaneFactory, clock: Clock,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_TEST_HEC", rx.HEC_TOKEN)

    async def go() -> None:
        hub = rx.Hub()
        runner, port = await rx.start_http(hub)
        udp, tcp, udp_port, tcp_port, close_syslog = await rx.start_syslog()
        plane = make_plane(policy(_sinks_policy(port, udp_port, tcp_port)))
        await plane.start(background=False)
        plane.ingest_falco(body(falco_event(priority="Warning")))
        clock.advance(10)
        plane.ingest_gateway(body(access()))  # correlated: escalates to error
        clock.advance(400)
        await deliver_all(plane)
        plane.tick()  # sweep: closed
        await deliver_all(plane)
        await asyncio.sleep(0.2)  # let the UDP datagrams land
        assert hub.errors == []
        kinds = [i["kind"] for i in hub.got["webhook"]]
        assert kinds == ["opened", "escalated", "closed"]
        assert len({i["key"] for i in hub.got["webhook"]}) == 3
        # Slack only hears error and above: the escalation and the close
        assert [m["text"].split("]")[0] for m in hub.got["slack"]] == ["[ERROR", "[ERROR"]
        # events sinks get both events, with their incident id
        envs = hub.got["splunk"]
        assert [e["sourcetype"] for e in envs] == ["corral:event", "corral:event"]
        assert {e["index"] for e in envs} == {"sec"} and envs[0]["event"]["agent"] == "research"
        docs = hub.got["elasticsearch"]
        assert [a["_index"] for a, _ in docs] == ["corral-events"] * 2
        assert all(d["@timestamp"].endswith("Z") and d["incident"] for _, d in docs)
        labels = [s for s, _ in hub.got["loki"]]
        assert labels[0] == {"source": "corral", "kind": "incident", "severity": "warning",
                             "agent": "research"}
        alerts = hub.got["alertmanager"]
        assert [("endsAt" in a) for a in alerts] == [False, False, True]
        assert alerts[0]["labels"]["alertname"] == "CorralIncident"
        for msgs in (udp, tcp):
            assert len(msgs) == 3
            for m in msgs:
                match = rx.RFC5424.match(m)
                assert match, m
                assert json.loads(match["msg"])["incident"]["agent"] == "research"
            # local0 (16) * 8 + warning (4) for the opening notice, + error (3) after
            assert [int(rx.RFC5424.match(m)["pri"]) for m in msgs] == [132, 131, 131]  # type: ignore[index]
        await plane.aclose()
        await runner.cleanup()
        await close_syslog()
    run(go())


def test_outage_queues_on_disk_and_a_restart_delivers_exactly_once(
        make_plane: PlaneFactory, clock: Clock, tmp_path: Path) -> None:
    async def go() -> None:
        hub = rx.Hub()
        runner, port = await rx.start_http(hub)
        await runner.cleanup()  # the receiver is down: connection refused
        pol = policy(f"""\
response:
  sinks:
    - {{name: es, type: elasticsearch, url: "http://127.0.0.1:{port}", send: events,
       route: {{min_severity: debug}}, batch: 50}}
""")
        plane = make_plane(pol)
        await plane.start(background=False)
        n = 0
        for i in range(300):
            plane.ingest_falco(body(falco_event(proc=f"p{i % 7}", pod=f"pod-{i % 5}")))
            n += 1
        await deliver_all(plane, rounds=3)
        d = plane.deliverers["es"]
        assert d.queue.depth == n and d.stats.failures == 3 and d.stats.delivered == 0
        assert clock.slept[-3:] == [0.5, 1.0, 2.0]  # exponential backoff
        await plane.aclose()  # "crash"/restart: the queue is on disk

        runner2, _ = await rx.start_http(hub, port)
        again = make_plane(pol)
        await again.start(background=False)
        assert again.deliverers["es"].queue.depth == n
        await deliver_all(again, rounds=50)
        assert again.deliverers["es"].queue.depth == 0
        assert len(hub.got["elasticsearch"]) == n == len(hub.es_docs)  # exactly once
        await again.aclose()
        await runner2.cleanup()
    run(go())


def test_redelivery_after_lost_ack_is_absorbed_by_document_ids(tmp_path: Path) -> None:
    async def go() -> None:
        import aiohttp

        from corral.control.sinks.http import ElasticSink
        hub = rx.Hub()
        runner, port = await rx.start_http(hub)
        async with aiohttp.ClientSession() as s:
            sink = ElasticSink("es", f"http://127.0.0.1:{port}", s, timeout=5)
            items = [{"key": f"k{i}", "time": 1.0} for i in range(10)]
            await sink.emit(items)
            await sink.emit(items)  # as if the first ack had been lost
        assert len(hub.es_docs) == 10 and hub.errors == []
        await runner.cleanup()
    run(go())


def test_refused_items_go_to_dead_letters_not_retried(tmp_path: Path, clock: Clock) -> None:
    async def go() -> None:
        sink = MockSink()
        sink.fail = SinkError("HTTP 400: mapping error", retryable=False)
        q = DiskQueue(tmp_path / "q")
        q.put([{"key": "a"}, {"key": "b"}])
        d = Deliverer(sink, q, batch=10, backoff=1, backoff_max=8, sleep=clock.sleep,
                      clock=clock)
        assert await d.step()
        assert q.depth == 0 and q.dead_count() == 2 and clock.slept == []
        sink.fail = SinkError("HTTP 503", retryable=True)
        q.put([{"key": "c"}])
        for _ in range(6):
            await d.step()
        assert clock.slept == [1, 2, 4, 8, 8, 8]  # capped at backoff_max
        sink.fail = None
        assert await d.step() and [i["key"] for i in sink.received] == ["c"] and d.delay == 0
        q.close()
    run(go())


def test_queue_bound_drops_new_items_and_counts(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q", max_rows=100)
    q.put([{"key": i} for i in range(150)])
    assert q.depth == 100 and q.dropped == 50
    assert q.peek(1)[0][1] == {"key": 0}
    q.close()


def test_queue_segments_restart_and_a_second_process_view(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.control.sinks import queue as qmod
    monkeypatch.setattr(qmod, "SEGMENT_BYTES", 200)  # roll every few items
    writer = DiskQueue(tmp_path / "q")
    reader = DiskQueue(tmp_path / "q")  # as in the sink worker process: same directory
    writer.put([{"key": i} for i in range(10)])
    got = reader.peek(4)
    assert [i for i, _ in got] == [0, 1, 2, 3] and reader.peek(4) == got  # until acked
    reader.ack([0, 1, 2, 3])
    writer.put([{"key": i} for i in range(10, 25)])
    seen = [item["key"] for _, item in got]
    while rows := reader.peek(7):
        seen += [item["key"] for _, item in rows]
        reader.ack([i for i, _ in rows])
    assert seen == list(range(25))
    assert writer.refresh() == 0 and len(list((tmp_path / "q").glob("seg-*"))) == 1
    writer.put([{"key": 25}])
    with (tmp_path / "q" / sorted(p.name for p in (tmp_path / "q").glob("seg-*"))[-1]
          ).open("ab") as f:
        f.write(b'{"key": 26, "cut sho')  # a crash in the middle of a write
    writer.close()
    reader.close()
    again = DiskQueue(tmp_path / "q")  # restart: resumes after the last ack, drops the cut
    assert again.depth == 1 and [r[1] for r in again.peek(10)] == [{"key": 25}]
    again.put([{"key": 27}])
    assert [r[1]["key"] for r in DiskQueue(tmp_path / "q").peek(10)] == [25, 27]


def test_http_sink_errors_classified(tmp_path: Path) -> None:
    async def go() -> None:
        import aiohttp

        from corral.control.sinks.http import WebhookSink
        hub = rx.Hub()
        runner, port = await rx.start_http(hub)
        async with aiohttp.ClientSession() as s:
            sink = WebhookSink("w", f"http://127.0.0.1:{port}/hook", s, timeout=5)
            results: list[Any] = []
            for status in (503, 429, 404):
                hub.status = status
                with pytest.raises(SinkError) as err:
                    await sink.emit([{"key": "x"}])
                results.append(err.value.retryable)
            assert results == [True, True, False]
        await runner.cleanup()
    run(go())


def test_sink_worker_process_delivers_after_the_receiver_returns(make_plane: PlaneFactory) -> None:
    """As `corral serve` runs it: delivery in a child process over the same queue files."""
    async def go() -> None:
        hub = rx.Hub()
        runner, port = await rx.start_http(hub)
        await runner.cleanup()  # down at first
        pol = policy(f"""\
response:
  sinks:
    - {{name: es, type: elasticsearch, url: "http://127.0.0.1:{port}", send: events,
       route: {{min_severity: debug}}, batch: 40, backoff_s: 0.05, backoff_max_s: 0.2}}
""")
        plane = make_plane(pol, sink_process=True)
        await plane.start(background=False)
        for i in range(200):
            plane.ingest_falco(body(falco_event(proc=f"p{i % 9}")))
        plane.tick()

        async def until(check: Any, what: str) -> None:
            for _ in range(300):  # at most 30 s: the worker is a real process on real time
                if check():
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(what)

        await until(lambda: plane.sinks()[0]["failures"] >= 2, "worker retrying")
        assert plane.sinks()[0]["queued"] == 200
        runner2, _ = await rx.start_http(hub, port)
        await until(lambda: plane.sinks()[0]["queued"] == 0, "queue drained")
        assert len(hub.es_docs) == 200 and hub.errors == []
        await until(lambda: plane.sinks()[0]["delivered"] == 200, "stats reported")
        # a worker that dies is started again, and what was queued meanwhile is delivered
        assert plane.sink_process is not None and plane.sink_process._proc is not None
        plane.sink_process._proc.kill()
        await until(plane.sink_process.dead, "worker gone")
        for i in range(30):
            plane.ingest_falco(body(falco_event(proc=f"q{i}")))
        plane.tick()  # queues the 30 and restarts the worker
        await until(lambda: len(hub.es_docs) == 230, "delivered after the restart")
        await plane.aclose()
        await runner2.cleanup()
    run(go())
