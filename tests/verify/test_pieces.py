"""The small pieces of verify and drill: probe on loopback, target choice, scoring, and the
control-plane client against a real ``corral serve``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.decide.egress import AgentRules, EgressRequest, decide
from corral.model.load import load_policy
from corral.verify import control_client, drill, falcolab, probe, targets
from corral.verify.catalogue import BY_ID, TECHNIQUES
from corral.verify.drill import ControlResult, Score
from corral.verify.exercises import EXERCISES

ROOT = Path(__file__).resolve().parents[2]
POLICY = load_policy(ROOT / "examples" / "corral.yaml")


# -- probe ----------------------------------------------------------------------------------

@pytest.fixture
def refusing_proxy() -> Iterator[int]:
    """A loopback 'proxy' that refuses everything like the gateway does (403 + reason)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.recv(65536)
            body = b"corral: agent 'research' may not reach x:443 (reason not_in_allowlist)\n"
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nX-Corral-Reason: not_in_allowlist\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join(2)
    srv.close()


def run_probe(plan: dict[str, object]) -> dict[str, probe.Result]:
    done = subprocess.run([sys.executable, "-m", "corral.verify.probe", json.dumps(plan)],
                          capture_output=True, text=True, timeout=30, check=True)
    return probe.parse_results(done.stdout)


def test_probe_reports_what_happened(refusing_proxy: int, tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    secret = tmp_path / "token"
    secret.write_text("not-a-real-token")
    res = run_probe({"proxy": f"http://127.0.0.1:{refusing_proxy}", "timeout": 2, "attempts": [
        {"id": "open", "kind": "direct", "host": "127.0.0.1", "port": refusing_proxy},
        {"id": "closed", "kind": "direct", "host": "127.0.0.1", "port": closed_port},
        {"id": "connect", "kind": "connect", "host": "x", "port": 443},
        {"id": "http", "kind": "http", "url": "http://x/"},
        {"id": "upload", "kind": "upload", "url": "http://x/", "total": 10, "chunk": 5},
        {"id": "read", "kind": "read", "path": str(secret)},
        {"id": "absent", "kind": "read", "path": str(tmp_path / "nope")},
        {"id": "bad", "kind": "teleport"},
    ]})
    assert res["open"]["outcome"] == "connected"
    assert res["closed"]["outcome"] == "refused"
    for i in ("connect", "http", "upload"):
        assert (res[i]["outcome"], res[i]["status"], res[i]["reason"]) == \
            ("refused", 403, "not_in_allowlist"), res[i]
    assert res["connect"]["body"].startswith("corral: agent 'research'")
    assert res["upload"]["sent"] == 0
    assert (res["read"]["outcome"], res["read"]["bytes"]) == ("read", 16)
    assert res["absent"]["outcome"] == "absent"
    assert res["bad"]["outcome"] == "bad_attempt"


def test_probe_rejects_a_bad_plan() -> None:
    done = subprocess.run([sys.executable, "-m", "corral.verify.probe", "{not json"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2 and "attempts" in done.stderr


def test_parse_results_ignores_noise() -> None:
    text = 'warning: something\n{"id": "a", "outcome": "x"}\n{broken\n[1]\n'
    assert probe.parse_results(text) == {"a": {"id": "a", "outcome": "x"}}


# -- targets --------------------------------------------------------------------------------

def test_targets_agree_with_the_decision_function() -> None:
    agent = targets.pick_agent(POLICY)
    assert agent.name == "research"
    rules = AgentRules.from_agent(agent)
    ok, no = targets.allowed(agent), targets.denied(agent)
    assert decide(rules, EgressRequest("connect", ok.host, ok.port)).outcome == "allow"
    assert decide(rules, EgressRequest("connect", no.host, no.port)).outcome == "deny"
    coder = POLICY.spec.agent("coder")  # learn mode, but deny beats allow there too
    assert targets.denied(coder).host == "corral-verify.ngrok.io"
    learner = coder.model_copy(update={"egress": coder.egress.model_copy(update={"deny": ()})})
    with pytest.raises(targets.NoTarget, match="learn mode"):
        targets.denied(learner)
    with pytest.raises(targets.NoTarget, match="no agent named"):
        targets.pick_agent(POLICY, "nobody")


# -- scoring --------------------------------------------------------------------------------

def score(tid: str, *results: tuple[str, str]) -> Score:
    return Score(BY_ID[tid], tuple(ControlResult(c, r, "e") for c, r in results))  # type: ignore[arg-type]


def test_verdicts_and_expectations() -> None:
    assert score("exfil-new-domain", ("gateway", "blocked"), ("control-plane", "missed")).ok
    detected_only = score("exfil-new-domain", ("gateway", "missed"),
                          ("control-plane", "detected"))
    assert detected_only.verdict == "detected" and not detected_only.ok  # must be blocked
    assert score("run-shell", ("falco", "detected")).ok
    assert not score("run-shell", ("falco", "missed")).ok
    unavailable = score("run-shell", ("falco", "not_available"))
    assert unavailable.verdict == "not_available" and not unavailable.ok  # never a pass
    assert not drill.all_ok([unavailable])


def test_catalogue_and_exercises_match() -> None:
    assert {t.id for t in TECHNIQUES} == set(EXERCISES)
    assert len(TECHNIQUES) == 15


def test_a_broken_exercise_scores_error_and_the_drill_goes_on() -> None:
    def boom(_ctx: object) -> list[ControlResult]:
        raise RuntimeError("lab fell over")

    fine: drill.Exercise = lambda _ctx: [ControlResult("falco", "detected", "ok")]  # noqa: E731
    scores = drill.run_all(None, {"run-shell": boom, "package-manager": fine},
                           only=["run-shell", "package-manager"])
    assert [s.verdict for s in scores] == ["error", "detected"]
    assert "lab fell over" in drill.to_text(scores, "t")


# -- control plane ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "corral", "serve", "-f",
                             str(ROOT / "examples" / "corral.yaml"), "--listen",
                             f"127.0.0.1:{port}", "--state", str(tmp_path / "state"),
                             "--kube", "off"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            control_client.get_json(f"{url}/v1/incidents", timeout=1)
            break
        except control_client.ControlError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def test_find_event_sees_the_falco_alert_of_the_test_pod(serve: str) -> None:
    agent = POLICY.spec.agent("research")
    since = time.time()
    assert control_client.find_event(serve, "ai-workloads", "corral-verify-proc-x", since) is None
    alert = falcolab.alert(POLICY, agent, "unexpected_process", pod="corral-verify-proc-x",
                           process="corral-drill", parent="python3")
    req = urllib.request.Request(f"{serve}/v1/falco", data=json.dumps(alert).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5) as r:
        assert r.status == 200
    deadline, found = time.monotonic() + 5, None
    while found is None and time.monotonic() < deadline:
        found = control_client.find_event(serve, "ai-workloads", "corral-verify-proc-x", since)
        time.sleep(0.05)
    assert found is not None and "unexpected process [research]" in found
    assert control_client.find_event(serve, "ai-workloads", "another-pod", since) is None


def test_control_errors_are_reported() -> None:
    with pytest.raises(control_client.ControlError):
        control_client.get_json(f"http://127.0.0.1:{free_port()}/v1/incidents", timeout=1)
