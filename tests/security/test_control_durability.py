"""A 2xx from ``corral serve`` means the event is stored: kill -9 at random points during
sustained ingest, 20 times, and every acknowledged event is on disk afterwards.

The old server answered 200 first and drained its outbox every 100 ms: a kill lost about a
fifth of what it had acknowledged. Each alert carries a unique id in its output fields; a
``send: events`` sink whose receiver is down keeps every event in its disk queue, so after the
kill (and the restart that replays the ingest journal) the queue files and the incident store
are compared with the ids that got a 200.
"""

from __future__ import annotations

import http.client
import json
import random
import sqlite3
import threading
import time
from pathlib import Path

from tests.security.serve import INGEST_TOKEN, POLICY, Serve, assert_no_traceback, free_port

TRIALS = 20
POSTERS = 4


def _policy() -> str:
    return POLICY + (
        "    sinks:\n"
        f"      - {{name: siem, type: webhook, url: 'http://127.0.0.1:{free_port()}/x',\n"
        "         send: events, backoff_s: 5, route: {min_severity: debug}}\n")


def _alert(n: int) -> bytes:
    return json.dumps({
        "rule": "Terminal shell in container", "priority": "Warning", "source": "syscall",
        "time": "2026-11-26T12:01:58.123456789Z", "output": f"shell {n}",
        "output_fields": {"k8s.ns.name": "ai-workloads", "k8s.pod.name": f"alpha-{n % 7}",
                          "k8s.pod.labels": "app:alpha-agent", "test.id": n}}).encode()


def _poster(port: int, first: int, acked: list[int], stop: threading.Event) -> None:
    """Post alerts over one keep-alive connection until the server dies; note every 200."""
    n = first
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        while not stop.is_set():
            conn.request("POST", "/v1/falco", _alert(n),
                         {"Authorization": f"Bearer {INGEST_TOKEN}"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                acked.append(n)
            n += 1
    except (OSError, http.client.HTTPException):
        pass  # the kill
    finally:
        conn.close()


def _stored(state: Path) -> tuple[set[int], int]:
    """Ids in the sink queue files, and the total of the stored event counts."""
    ids: set[int] = set()
    for seg in sorted((state / "sinks" / "siem").glob("seg-*.ndjson")):
        for line in seg.read_bytes().split(b"\n"):
            if line.strip():
                ids.add(int(json.loads(line)["fields"]["test.id"]))
    with sqlite3.connect(state / "incidents.db") as db:
        counted = db.execute("SELECT COALESCE(SUM(count), 0) FROM event_counts").fetchone()[0]
    return ids, int(counted)


def _check(state: Path, acked: list[int], trial: int) -> None:
    ids, counted = _stored(state)
    missing = set(acked) - ids
    assert not missing, f"trial {trial}: {len(missing)} acknowledged events lost"
    assert counted >= len(acked), (trial, counted, len(acked))


def test_kill_9_never_loses_an_acknowledged_event(tmp_path: Path) -> None:
    rng = random.Random(11)
    policy, state = _policy(), tmp_path / "state"
    all_acked: list[int] = []
    for trial in range(TRIALS + 1):
        # at start serve replays what the killed one acknowledged but had not drained
        s = Serve(tmp_path, policy=policy, state=state).wait_up()
        _check(state, all_acked, trial - 1)
        if trial == TRIALS:
            s.stop()
            assert_no_traceback(s)
            break
        stop = threading.Event()
        acked: list[int] = []
        threads = [threading.Thread(target=_poster, args=(s.port, (trial * POSTERS + i) << 24,
                                                          acked, stop), daemon=True)
                   for i in range(POSTERS)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 1.0))
        s.kill()  # SIGKILL: no drain, no atexit
        stop.set()
        for t in threads:
            t.join(10)
        assert "Traceback" not in s.stderr()
        all_acked += acked
    assert len(all_acked) > TRIALS * 10  # the load was real
