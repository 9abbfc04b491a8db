"""Odd input against ``corral serve`` as a process: never a crash, never a traceback.

A bare CR inside a Falco JSON body (JSON whitespace) once killed the behaviour worker, which
split its frames with ``splitlines()``; JSON nested 600 deep was read (orjson reads 1,024
levels) and then failed to be written (254), a 500 and a traceback. A worker that dies anyway is
started again and counted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.control.conftest import access
from tests.security.serve import ADMIN_TOKEN, INGEST_TOKEN, Serve


def _alert(**extra: object) -> dict[str, object]:
    return {"rule": "Terminal shell in container", "priority": "Warning",
            "time": "2026-11-26T12:01:58.123456789Z", "output": "shell", "source": "syscall",
            "output_fields": {"k8s.ns.name": "ai-workloads", "k8s.pod.name": "alpha-1",
                              "k8s.pod.labels": "app:alpha-agent"}, **extra}


def _post(s: Serve, body: bytes, path: str = "/v1/falco") -> int:
    return s.request("POST", path, body, token=INGEST_TOKEN)[0]


def _settled(s: Serve, seconds: float = 2.0) -> None:
    """Give the drain (100 ms) and the behaviour worker time to take what was posted."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)


def test_bare_cr_in_a_falco_body_does_not_kill_the_behaviour_worker(serve: Serve) -> None:
    body = orjson.dumps(_alert()).replace(b',"priority"', b',\r"priority"')
    assert b"\r" in body and b"\n" not in body
    assert _post(serve, body) == 200
    assert _post(serve, body.replace(b"\r", b"\r\r\n")) == 200  # NDJSON-ish with CRs
    _settled(serve)
    assert serve.metric("corral_control_worker_restarts_total") == 0
    assert serve.metric("corral_control_aggregate_errors_total") == 0
    assert "exited" not in serve.stderr()


def test_deep_json_gets_4xx_not_500(serve: Serve) -> None:
    alert = orjson.dumps(_alert(tags=["t"]))[:-1]
    for depth in (40, 255, 600, 1023, 1025, 5000):
        deep = b"[" * depth + b"1" + b"]" * depth
        for body in (alert + b',"nested":' + deep + b"}", deep,
                     alert + b',"output_fields":{"x":' + deep + b"}}"):
            status = _post(serve, body)
            assert 400 <= status < 500, (depth, status)
            assert _post(serve, body, "/v1/gateway") in range(400, 500)
    assert _post(serve, orjson.dumps(_alert())) == 200  # still serving
    _settled(serve, 0.5)


def test_a_dying_worker_is_restarted_and_counted(serve: Serve) -> None:
    assert _post(serve, orjson.dumps(_alert())) == 200
    _settled(serve, 0.5)
    children = serve.children()
    assert children, "serve should run its behaviour worker"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while serve.metric("corral_control_worker_restarts_total") < 1:
        assert time.monotonic() < deadline, "the worker was not restarted"
        time.sleep(0.1)
    assert _post(serve, orjson.dumps(_alert())) == 200
    _settled(serve, 1.0)
    assert len(serve.children()) == len(children)  # running again


ODD = [
    b"", b"\x00", b"\xff\xfe", b"{", b"}", b"[]", b"[1,2]", b"null", b"1e999", b'"x"',
    b"9" * 5000, b'{"rule":' + b"9" * 400 + b"}", b'{"rule":"\\ud800","priority":"Critical"}',
    b'{"rule":"x","priority":"Critical","time":"\\u0000"}',
    b'{"rule":"x","priority":"Critical","time":"2026-11-26T12:01:58Z","tags":[1]}',
    b'{"rule":"x","priority":"Critical","time":"2026-11-26T12:01:58Z","output_fields":[]}',
    b'{"rule":"x","priority":"Critical","time":"9999-99-99T99:99:99Z"}',
    b'{"rule":"x","priority":"Critical","time":"2026-11-26T12:01:58Z","hostname":{"a":1}}',
    b'{"rule":"x","priority":{"p":1},"time":"2026-11-26T12:01:58Z"}',
    b"\r\r\r", b"\n\n\n", b"{}\n{}\r\n{\"a\":\x01}",
    json.dumps(_alert(output_fields={"k8s.pod.name": "../../x", "k8s.ns.name": "%2e%2e"}))
    .encode(),
    json.dumps({"kind": "access", "agent": "alpha", "decision": "deny", "port": "x"}).encode(),
    json.dumps({"kind": "access", "agent": ["a"], "time": 1}).encode(),
]


def test_no_traceback_for_any_odd_input(serve: Serve) -> None:
    for body in ODD:
        for path in ("/v1/falco", "/v1/gateway"):
            status = _post(serve, body, path)
            assert status < 500, (path, body[:80], status)
    for path in ("/v1/agents/%2e%2e/release", "/v1/agents/..%2f..%2fx/quarantine",
                 "/v1/agents/\x00/release", "/v1/incidents/%00", "/v1/incidents?limit=x",
                 "/v1/incidents?limit=99999999999999999999", "/v1/agents/alpha/release/x"):
        status = serve.request("POST" if "agents" in path else "GET",
                               path.replace("\x00", "%00"), b"" if "agents" in path else None,
                               token=ADMIN_TOKEN)[0]
        assert status < 500, (path, status)
    for raw in (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                b"POST /v1/falco HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"\x16\x03\x01\x00\x05hello", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", serve.port), timeout=5) as sock:
            sock.sendall(raw)
            sock.settimeout(5)
            try:
                answer = sock.recv(200)
            except OSError:
                answer = b""
            assert not answer.startswith(b"HTTP/1.1 5"), answer
    _settled(serve, 1.0)
    assert serve.metric("corral_control_worker_restarts_total") == 0


def test_behaviour_worker_exits_quietly_when_serve_is_gone(tmp_path: Path) -> None:
    """serve killed with -9 leaves its behaviour worker answering into a pipe nobody reads: it
    stops with status 0 and no traceback (the kill -9 durability test once caught one)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (serve) is gone before the answer is written
    frame = orjson.dumps(access()) + b"\n"
    done = subprocess.run(
        [sys.executable, "-m", "corral.control.behaviour", str(tmp_path / "b.db"), "{}"],
        input=b"A %d\n" % len(frame) + frame, stdout=write_end, stderr=subprocess.PIPE,
        timeout=60, check=False)
    os.close(write_end)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
