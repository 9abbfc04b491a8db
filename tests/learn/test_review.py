"""The weekly review over a realistic six-week history (tests/learn/scenario.py): it must find
exactly the planted incidents and nothing else, and --apply must produce a policy that loads,
renders and keeps its comments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from corral.cli import main
from corral.compile.render import render_all
from corral.learn import apply
from corral.learn.suggest import Suggestion
from corral.model.errors import PolicyError
from corral.model.load import load_policy, parse_policy
from tests import corpora
from tests.learn import scenario

NOW = "2026-11-26T12:00:00Z"
FALCO_SCHEMA = corpora.FALCO / "rule_schema.json"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    (root / "access.log").write_bytes(
        b"\n".join(orjson.dumps(r) for r in scenario.access_records()) + b"\n")
    (root / "falco.jsonl").write_bytes(
        b"\n".join(orjson.dumps(e) for e in scenario.falco_events()) + b"\n")
    (root / "corral.yaml").write_text(scenario.POLICY)
    code = main(["learn", str(root / "access.log"), str(root / "falco.jsonl"),
                 "--store", str(root / "store.db"), "-f", str(root / "corral.yaml")])
    assert code == 0
    return root


def _policy_copy(fleet: Path, tmp_path: Path) -> Path:
    p = tmp_path / "corral.yaml"
    p.write_text((fleet / "corral.yaml").read_text())
    return p


def _review(fleet: Path, capsys: pytest.CaptureFixture[str], *extra: str,
            policy: Path | None = None) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["review", "-f", str(policy or fleet / "corral.yaml"), "--store",
                 str(fleet / "store.db"), "--now", NOW, "--since", "7d", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def report(fleet: Path) -> dict[str, Any]:
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["review", "-f", str(fleet / "corral.yaml"), "--store",
                     str(fleet / "store.db"), "--now", NOW, "-o", "json"]) == 0
    data: dict[str, Any] = json.loads(buf.getvalue())
    return data


def test_new_destinations_are_exactly_the_planted_ones(report: dict[str, Any]) -> None:
    found = {(d["agent"], d["host"], d["port"]): d for d in report["new_destinations"]}
    assert set(found) == {
        ("research", "pastebin.com", 443),
        ("research", "203.0.113.50", 443),
        ("analyst", "api.anthropic.com", 443),
        ("scraper", "*.cdn-sync.xyz", 443),
    }
    kinds = {k: {f["kind"] for f in d["flags"]} for k, d in found.items()}
    assert kinds[("research", "pastebin.com", 443)] == {"paste"}
    assert kinds[("research", "203.0.113.50", 443)] == {"raw-ip"}
    assert kinds[("analyst", "api.anthropic.com", 443)] == set()
    assert kinds[("scraper", "*.cdn-sync.xyz", 443)] == {"encoded"}
    exfil = found[("scraper", "*.cdn-sync.xyz", 443)]
    assert len(exfil["hosts"]) == exfil["requests"] == 280 - _future_chunks()
    assert exfil["pods"] >= 2 and exfil["risky"] is True
    assert found[("analyst", "api.anthropic.com", 443)]["verdict"]["outcome"] == "deny"


def _future_chunks() -> int:
    """Exfiltration requests of 'today' that fall after NOW were dropped by the generator."""
    recs = scenario.access_records()
    return 280 - sum(1 for r in recs if r["host"].endswith(".cdn-sync.xyz"))


def test_denials_per_agent(report: dict[str, Any]) -> None:
    act = {a["agent"]: a for a in report["activity"]}
    assert act["research"]["deny"] == 12 and act["research"]["would_deny"] == 0
    assert act["analyst"]["deny"] > 0 and act["analyst"]["mode"] == "enforce"
    assert act["coder"]["deny"] == 0 and act["coder"]["would_deny"] > 0
    assert act["scraper"]["would_deny"] > 0
    top = dict(act["coder"]["top_denied"])
    assert set(top) == {"crates.io:443", "proxy.golang.org:443"}


def test_unused_entries_volume_anomalies_readiness(report: dict[str, Any]) -> None:
    assert [(u["agent"], u["entry"]) for u in report["unused"]] == [
        ("research", "old-api.example.com")]
    assert [(a["agent"], a["host"], a["day"]) for a in report["anomalies"]] == [
        ("research", "api.github.com", "2026-11-24")]
    assert report["anomalies"][0]["ratio"] > 100
    ready = {r["agent"]: r["ready"] for r in report["readiness"]}
    assert ready == {"coder": True, "scraper": False}


def test_noisy_falco_rules_and_exception(report: dict[str, Any]) -> None:
    noisy = {(n["agent"], n["rule"]): n for n in report["falco"]}
    assert set(noisy) == {("coder", "Compiler run in container"),
                          ("research", "corral: research: unexpected process"),
                          ("coder", "Terminal shell in container")}
    own = noisy[("research", "corral: research: unexpected process")]
    assert own["exception"] is None and "corral's own rule" in own["held"]
    exc = noisy[("coder", "Compiler run in container")]["exception"]
    assert exc["fields"] == ["proc.name", "container.image.repository"]
    assert exc["values"] == ["cc1", "registry.example.com/agents/coder"]
    assert noisy[("coder", "Terminal shell in container")]["exception"] is None


def test_text_markdown_html_outputs(fleet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = _review(fleet, capsys)
    assert code == 0
    assert "4 new destinations (3 risky)" in text and "\x1b[" not in text
    assert "*.cdn-sync.xyz" in text and "old-api.example.com" in text
    _, md, _ = _review(fleet, capsys, "-o", "markdown")
    assert md.startswith("# corral review") and "| agent | destination |" in md
    _, page, _ = _review(fleet, capsys, "-o", "html")
    assert page.startswith("<!doctype html>") and page.count("<svg") == 4 + 2  # 4 agents
    assert "Suggested policy change" in page
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert "polyline" in page and "pastebin.com" in page


def test_terminal_tables_mark_risky_rows(fleet: Path) -> None:
    import io

    from rich.console import Console

    from corral.cli.review import instant
    from corral.learn import render
    from corral.learn.build import build_report
    from corral.learn.report import ReviewOptions
    from corral.store.aggregates import AggregateStore

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, color_system="standard")
    with AggregateStore.open(fleet / "store.db", readonly=True) as store:
        rep = build_report(store.conn, load_policy(fleet / "corral.yaml"),
                           ReviewOptions(now=instant(NOW)))
    render.print_text(console, rep)
    out = buf.getvalue()
    assert "\x1b[" in out and "pastebin.com" in out
    red = [line for line in out.splitlines() if "\x1b[1;31m" in line]
    assert any("pastebin.com" in line for line in red)
    assert not any("api.anthropic.com" in line for line in red)


def test_suggest_prints_a_diff_and_writes_nothing(fleet: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy_copy(fleet, tmp_path)
    before = policy.read_text()
    code, diff, err = _review(fleet, capsys, "--suggest", policy=policy)
    assert code == 0 and policy.read_text() == before
    assert not (tmp_path / "falco-exceptions.yaml").exists()
    added = {line[1:].split("#")[0].strip() for line in diff.splitlines()
             if line.startswith("+") and not line.startswith("+++")}
    removed = {line[1:].split("#")[0].strip() for line in diff.splitlines()
               if line.startswith("-") and not line.startswith("---")}
    assert "- api.anthropic.com" in added and "- crates.io" in added
    assert "- proxy.golang.org" in added and "mode: enforce" in added
    assert "- old-api.example.com" in removed and "mode: learn" in removed
    assert not any("pastebin" in a or "cdn-sync" in a or "203.0.113" in a for a in added)
    assert "held back" in err and "pastebin.com" in err
    _, js, _ = _review(fleet, capsys, "--suggest", "-o", "json", policy=policy)
    data = json.loads(js)
    assert {(s["kind"], s["value"]) for s in data["held_back"]} == {
        ("add-allow", "pastebin.com"), ("add-allow", "*.cdn-sync.xyz")}
    assert data["policy_diff"] == diff[: len(data["policy_diff"])]
    assert "override" in data["falco_rules_diff"]


def test_apply_keeps_comments_loads_and_renders(fleet: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy_copy(fleet, tmp_path)
    code, _, _ = _review(fleet, capsys, "--apply", policy=policy)
    assert code == 0
    text = policy.read_text()
    for comment in ("# corral policy for the review tests", "# the policy name",
                    "# matchLabels", "# forecasts", "# deny beats allow",
                    "# Coding agent, still being profiled.", "# uploads reports here"):
        assert comment in text
    loaded = load_policy(policy)
    coder = loaded.spec.agent("coder")
    assert coder.egress.mode == "enforce"
    assert {str(p) for p in coder.egress.allow} >= {"crates.io", "proxy.golang.org"}
    research = loaded.spec.agent("research")
    assert "old-api.example.com" not in {str(p) for p in research.egress.allow}
    assert "pastebin.com" not in {str(p) for p in research.egress.allow}
    assert loaded.spec.agent("scraper").egress.mode == "learn"
    assert render_all(loaded)
    rules = yaml.safe_load((tmp_path / "falco-exceptions.yaml").read_text())
    assert rules[0]["override"] == {"exceptions": "append"}
    assert rules[0]["exceptions"][0]["values"] == [["cc1", "registry.example.com/agents/coder"]]
    # a second --apply has nothing left to do: same files
    _review(fleet, capsys, "--apply", policy=policy)
    assert policy.read_text() == text


@pytest.mark.skipif(not FALCO_SCHEMA.exists(), reason="Falco corpora (rule schema) not present")
def test_falco_exceptions_file_matches_falcos_rule_schema(report: dict[str, Any]) -> None:
    from corral.learn.report import FalcoException

    excs = [FalcoException(**{**n["exception"], "fields": tuple(n["exception"]["fields"]),
                              "values": tuple(n["exception"]["values"])})
            for n in report["falco"] if n["exception"]]
    assert excs
    existing = "- rule: other\n  exceptions: [{name: keep, fields: [proc.name], values: [[a]]}]\n"
    rules = yaml.safe_load(apply.falco_rules_text(excs, existing))
    jsonschema.validate(rules, json.loads(FALCO_SCHEMA.read_text()))
    assert [r["rule"] for r in rules] == ["other", "Compiler run in container"]


def test_include_risky_applies_risky_additions(fleet: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy_copy(fleet, tmp_path)
    _review(fleet, capsys, "--apply", "--include-risky", policy=policy)
    loaded = load_policy(policy)
    research = {str(p) for p in loaded.spec.agent("research").egress.allow}
    assert "pastebin.com" in research
    assert "203.0.113.50" not in research  # raw IPs are never suggested as names


def test_invalid_policy_input_writes_nothing(fleet: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy_copy(fleet, tmp_path)
    broken = policy.read_text().replace("  namespace: ai-workloads\n",
                                        "  namespace: ai-workloads\n  bogus_field: 1\n")
    policy.write_text(broken)
    code, _, err = _review(fleet, capsys, "--apply", policy=policy)
    assert code == 2 and policy.read_text() == broken and "bogus_field" in err
    assert not (tmp_path / "falco-exceptions.yaml").exists()


def test_an_edit_that_does_not_validate_is_not_written(tmp_path: Path) -> None:
    policy = tmp_path / "corral.yaml"
    policy.write_text(scenario.POLICY)
    bad = Suggestion("add-allow", "research", "allow", "*.com", "public-suffix wildcard")
    edit = apply.apply_suggestions(scenario.POLICY, [bad])
    assert "*.com" in edit.text
    with pytest.raises(PolicyError) as err:
        apply.write_policy(policy, edit.text)
    assert "spec.agents[0].egress.allow[5]" in str(err.value.problems[0])
    assert policy.read_text() == scenario.POLICY
    assert [p.name for p in tmp_path.iterdir()] == ["corral.yaml"]  # no temp file left


def test_unused_entries_match_ports_wildcards_and_cidrs(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from corral.learn.build import unused_entries
    from corral.learn.report import ReviewOptions
    from corral.model import records as rec
    from corral.store.aggregates import AggregateStore
    from tests.learn.test_store import access

    text = """apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {name: t}
spec:
  namespace: ns
  agents:
    - name: research
      selector: {app: r}
      egress:
        allow: [git.corp.example:8443, "*.weather.gov", api.openai.com, idle.example.com]
        allow_cidrs: [10.96.0.0/12, 192.168.0.0/16]
"""
    policy, _ = parse_policy(text)
    old, new = "2026-09-01T10:00:00.000Z", "2026-11-20T10:00:00.000Z"
    recs = [access(**{rec.TIME: old}),  # observed long enough
            access(**{rec.TIME: new, rec.HOST: "git.corp.example", rec.PORT: 8443,
                      rec.RULE: None, rec.DECISION: "deny"}),
            access(**{rec.TIME: new, rec.HOST: "idle.example.com", rec.PORT: 8443,
                      rec.RULE: None, rec.DECISION: "deny"}),  # wrong port: not its entry
            access(**{rec.TIME: new, rec.HOST: "a.b.weather.gov", rec.RULE: "*.weather.gov"}),
            access(**{rec.TIME: new, rec.HOST: "10.100.0.7", rec.RULE: None,
                      rec.DECISION: "deny"}),  # denied despite the CIDR (say, quarantine)
            access(**{rec.TIME: old, rec.HOST: "api.openai.com"})]
    with AggregateStore.open(tmp_path / "s.db") as store:
        store.ingest_access(recs)
        opts = ReviewOptions(now=datetime(2026, 11, 26, tzinfo=UTC))
        found = unused_entries(store.conn, policy, opts)
    assert [(u.field, u.entry, u.last_used) for u in found] == [
        ("allow", "api.openai.com", old), ("allow", "idle.example.com", None),
        ("allow_cidrs", "192.168.0.0/16", None)]


def test_apply_handles_flow_lists_and_missing_allow_lists() -> None:
    text = """apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {name: p}
spec:
  namespace: ns
  agents:
  - name: a
    selector: {app: a}
    egress: {mode: learn, allow: [pypi.org, github.com]}   # compact
  - name: b
    selector: {app: b}
"""
    chosen = [Suggestion("add-allow", "a", "allow", "crates.io", "r"),
              Suggestion("enforce", "a", "mode", "enforce", "r"),
              Suggestion("remove-allow", "a", "allow", "github.com", "r"),
              Suggestion("add-allow", "b", "allow", "*.example.org", "r")]
    edit = apply.apply_suggestions(text, chosen)
    assert "egress: {mode: enforce, allow: [pypi.org, crates.io]}  # compact" in edit.text
    apply.validate(edit.text, "p")
    policy, _ = parse_policy(edit.text)
    assert [str(p) for p in policy.spec.agent("b").egress.allow] == ["*.example.org"]
    assert len(edit.applied) == 4
