"""Issue 12's cases (tests/learn/incidents.py): each planted attack is flagged and never allowed
or silenced by the review; each benign look-alike stays unflagged and is suggested."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.cli import main
from corral.model.load import load_policy
from tests.learn import incidents

NOW = "2026-11-26T12:00:00Z"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("incidents")
    (root / "access.log").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in incidents.access_records()))
    (root / "falco.jsonl").write_bytes(
        b"".join(orjson.dumps(e) + b"\n" for e in incidents.falco_events()))
    (root / "corral.yaml").write_text(incidents.POLICY)
    assert main(["learn", str(root / "access.log"), str(root / "falco.jsonl"), "--store",
                 str(root / "store.db"), "-f", str(root / "corral.yaml")]) == 0
    return root


def _run(fleet: Path, *extra: str, policy: Path | None = None) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["review", "-f", str(policy or fleet / "corral.yaml"), "--store",
                     str(fleet / "store.db"), "--now", NOW, "-o", "json", *extra]) == 0
    return buf.getvalue()


@pytest.fixture(scope="module")
def report(fleet: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_run(fleet))
    return data


def _flags(report: dict[str, Any], agent: str, host: str) -> set[str]:
    for d in report["new_destinations"]:
        if (d["agent"], d["host"]) == (agent, host):
            return {f["kind"] for f in d["flags"]}
    raise AssertionError(f"{agent} {host} is not among the new destinations")


def test_the_beacon_is_flagged_by_its_behaviour(report: dict[str, Any]) -> None:
    assert _flags(report, "planner", incidents.BEACON) >= {
        "beacon", "one-pod", "growth", "off-hours", "new-dest-upload"}


def test_benign_hosts_on_unseen_tlds_and_random_traffic_carry_no_flag(
        report: dict[str, Any]) -> None:
    for host in incidents.BENIGN_NEW:
        assert _flags(report, "helper", host) == set(), host


def test_a_regional_bucket_under_an_allowed_wildcard_is_flagged(report: dict[str, Any]) -> None:
    assert _flags(report, "etl", incidents.BUCKET) >= {"storage", "upload"}
    assert _flags(report, "etl", incidents.BEDROCK) == set()


def test_no_exception_for_rules_firing_with_the_attack(report: dict[str, Any]) -> None:
    noisy = {(n["agent"], n["rule"]): n for n in report["falco"]}
    own = noisy[("webbot", incidents.CURL_RULES[0])]
    assert own["exception"] is None and "corral's own rule" in own["held"]
    upstream = noisy[("webbot", incidents.CURL_RULES[1])]
    assert upstream["exception"] is None and "same hour" in upstream["held"]
    quiet = noisy[("helper", incidents.QUIET_RULE)]
    assert quiet["exception"] is not None and quiet["held"] == ""
    assert quiet["exception"]["values"][0] == "cc1"


def test_apply_loosens_nothing_suspicious(fleet: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "corral.yaml"
    policy.write_text(incidents.POLICY)
    result = json.loads(_run(fleet, "--apply", policy=policy))
    held = {(s["agent"], s["value"]) for s in result["held_back"]}
    assert ("planner", incidents.BEACON) in held
    applied = {(s["agent"], s["value"]) for s in result["applied"] if s["kind"] == "add-allow"}
    assert applied == {("helper", h) for h in incidents.BENIGN_NEW} | {
        ("reporter", incidents.PERIODIC)}
    loaded = load_policy(policy)
    assert incidents.BEACON not in {str(p) for p in loaded.spec.agent("planner").egress.allow}
    rules = (tmp_path / "falco-exceptions.yaml").read_text()
    assert incidents.QUIET_RULE in rules and "curl" not in rules


def test_include_risky_says_what_it_includes(fleet: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "corral.yaml"
    policy.write_text(incidents.POLICY)
    capsys.readouterr()
    assert main(["review", "-f", str(policy), "--store", str(fleet / "store.db"), "--now", NOW,
                 "--suggest", "--include-risky"]) == 0
    err = capsys.readouterr().err
    assert f"included because of --include-risky: planner add-allow {incidents.BEACON}" in err
    assert "beacon" in err


def test_raw_ips_and_encoded_names_read_as_one_row_each(report: dict[str, Any]) -> None:
    rows = {d["host"]: d for d in report["new_destinations"] if d["agent"] == "webbot"}
    assert set(rows) == {"198.51.100.0/24", "203.0.113.0/24", f"*.{incidents.TUNNEL[2:]}"}
    assert len(rows["198.51.100.0/24"]["hosts"]) == 12
    assert len(rows["203.0.113.0/24"]["hosts"]) == 11
    assert rows["198.51.100.0/24"]["denied"] + rows["203.0.113.0/24"]["denied"] == 650
    denied = {d["host"] for d in report["denied"] if d["agent"] == "webbot"}
    assert denied == set(rows)


def test_one_ranked_story_per_agent(report: dict[str, Any]) -> None:
    ranked = [(s["agent"], s["score"]) for s in report["stories"]]
    assert [a for a, _ in ranked] == ["webbot", "planner", "etl"]
    assert ranked == sorted(ranked, key=lambda x: -x[1])
    webbot = " ".join(sig["text"] for sig in report["stories"][0]["signals"])
    for part in ("198.51.100.0/24", "relay-dns.com", "denials on 2026-11-23",
                 "Outbound connection by curl", "corral: webbot: unexpected process"):
        assert part in webbot


def test_rows_are_sorted_by_risk_then_bytes(report: dict[str, Any]) -> None:
    from corral.learn.risk import WEIGHTS

    keys = [(-sum(WEIGHTS.get(k, 1) for k in {f["kind"] for f in d["flags"]}), -d["bytes_up"])
            for d in report["new_destinations"]]
    assert keys == sorted(keys)


def test_the_enforce_switch_keeps_a_fortnightly_job(report: dict[str, Any]) -> None:
    ready = {r["agent"]: r for r in report["readiness"]}
    assert ready["reporter"]["ready"] is True
    assert [d["host"] for d in ready["reporter"]["would_block"]] == [incidents.PERIODIC]


def test_switch_and_keep_are_suggested_together(fleet: Path, tmp_path: Path) -> None:
    policy = tmp_path / "corral.yaml"
    policy.write_text(incidents.POLICY)
    result = json.loads(_run(fleet, "--apply", policy=policy))
    applied = {(s["kind"], s["agent"], s["value"]) for s in result["applied"]}
    assert {("enforce", "reporter", "enforce"),
            ("add-allow", "reporter", incidents.PERIODIC)} <= applied
    reporter = load_policy(policy).spec.agent("reporter")
    assert reporter.egress.mode == "enforce"
    assert incidents.PERIODIC in {str(p) for p in reporter.egress.allow}


def test_tightening_narrows_a_wildcard_and_denies_a_channel_under_it(
        fleet: Path, tmp_path: Path) -> None:
    policy = tmp_path / "corral.yaml"
    policy.write_text(incidents.POLICY)
    result = json.loads(_run(fleet, "--apply", policy=policy))
    by_kind = {(s["kind"], s["agent"], s["value"]): s for s in result["applied"]}
    narrow = by_kind[("narrow-allow", "etl", "*.amazonaws.com")]
    assert narrow["replacement"] == [incidents.BEDROCK] and not narrow["risky"]
    assert incidents.BUCKET in narrow["reason"]
    assert ("add-deny", "etl", incidents.BUCKET) in by_kind
    etl = load_policy(policy).spec.agent("etl")
    assert {str(p) for p in etl.egress.allow} == {incidents.BEDROCK, "api.openai.com"}
    assert incidents.BUCKET in {str(p) for p in etl.egress.deny}


def test_the_headline_counts_in_words(fleet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["review", "-f", str(fleet / "corral.yaml"), "--store", str(fleet / "store.db"),
                 "--now", NOW]) == 0
    out = capsys.readouterr().out
    assert "1 agent ready to enforce" in out and "0 volume anomalies" in out
    assert "3 agents with risk signals" in out


def test_control_plane_incidents_join_the_story_and_block_exceptions(
        fleet: Path, tmp_path: Path) -> None:
    from corral.control.incidents import Incident
    from corral.control.store import IncidentStore

    db = tmp_path / "incidents.db"
    store = IncidentStore(db)
    start = incidents.NOW.timestamp() - 5 * 86_400
    day = 86_400
    found = [Incident(f"inc-{d}", "helper", "helper pod", None, "ai-workloads", "C2 callback",
                      "high", start - start % day + d * day + 9 * 3600,
                      start - start % day + d * day + 12 * 3600 - 1) for d in range(5)]
    store.write(found, {}, incidents.NOW.timestamp())
    store.close()
    data = json.loads(_run(fleet, "--incidents", str(db)))
    quiet = {(n["agent"], n["rule"]): n for n in data["falco"]}[("helper", incidents.QUIET_RULE)]
    assert quiet["exception"] is None and "same hour" in quiet["held"]
    helper = {s["agent"]: s for s in data["stories"]}["helper"]
    assert any("incident inc-0 (high, C2 callback)" in s["text"] for s in helper["signals"])
