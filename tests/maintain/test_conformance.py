"""``corral conformance``: the fleet's policy against ninety days of its behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.cli import main
from corral.model.load import load_policy

NOW = "2026-12-01T09:00:00Z"


def _conf(site: Path, *extra: str, images: bool = True) -> int:
    sources = ["--manifests", str(site / "k8s"), "--cluster", str(site / "dump.json")]
    return main(["conformance", "-f", str(site / "corral.yaml"), "--store",
                 str(site / "behaviour.db"), "--now", NOW, *(sources if images else []),
                 *extra])


def test_findings(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _conf(site, "-o", "json") == 1
    doc = json.loads(capsys.readouterr().out)
    got = sorted((f["rule"], f["subject"], f["message"].split(" ")[0]) for f in doc["findings"])
    assert got == [
        ("allow-unused", "agent coder", "allow"),  # internal-git.corp.example:8443
        ("allow-unused", "agent coder", "allow_cidrs"),
        ("allow-unused", "agent research", "allow"),  # en.wikipedia.org
        ("exception-stale", "exception coder_cc1", "(unexpected_process)"),
        ("exemption-unused", "admission registries", "exempt_images"),
        ("learn-mode-left", "agent coder", "in"),
        ("process-unlisted", "agent coder", "nmap"),
        ("process-unlisted", "agent research", "curl"),
        ("process-unobserved", "agent coder", "npm"),
        ("process-unobserved", "agent research", "node"),
        ("wildcard-wider-than-used", "agent research", "*.weather.gov"),
    ]
    changes = {(c["kind"], c["agent"], c["value"]): c for c in doc["changes"]}
    assert changes[("add-process", "coder", "nmap")]["risky"]  # tripped the package-tool rule
    assert not changes[("add-process", "research", "curl")]["risky"]
    assert changes[("remove-process", "research", "node")]["risky"]  # weak evidence
    assert ("enforce", "coder", "enforce") in changes
    # the exemption the coder's image uses is kept
    assert not any(c["value"] == "ghcr.io/corral-dev/coder:latest" for c in doc["changes"])


def test_without_images_exemptions_are_not_judged(site: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _conf(site, "-o", "json", images=False) == 1
    rules = {f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert "exemption-unused" not in rules


def test_suggest_is_a_diff_that_keeps_comments(site: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    before = (site / "corral.yaml").read_text()
    assert _conf(site, "--suggest") == 1
    diff = capsys.readouterr().out
    assert (site / "corral.yaml").read_text() == before  # nothing written
    assert '-          - "*.weather.gov"       # forecasts' in diff
    assert "+          - alerts.weather.gov    # added by corral conformance" in diff
    assert "-        mode: learn" in diff and "+        mode: enforce" in diff
    assert "+      processes: [python3, node, curl]" in diff
    assert "-      - name: coder_cc1              # compilers the coder runs" in diff
    assert "nmap" not in diff and "-      processes: [python3, node]" in diff  # risky held back


def test_apply_writes_a_valid_policy_with_comments(site: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _conf(site, "--apply", "--include-risky") == 0
    text = (site / "corral.yaml").read_text()
    assert "# corral policy: the maintenance tests edit it; comments must survive." in text
    assert "# Research agent, in production." in text
    policy = load_policy(site / "corral.yaml")
    research, coder = policy.spec.agents
    assert [str(p) for p in research.egress.allow] == [
        "api.openai.com", "alerts.weather.gov", "forecast.weather.gov"]
    assert research.processes == ("python3", "curl")
    assert coder.processes == ("python3", "pip", "git", "nmap")
    assert coder.egress.mode == "enforce" and coder.egress.allow_cidrs == ()
    assert [e.name for e in policy.spec.runtime.exceptions] == ["research_curl"]
    assert policy.spec.admission.controls.registries.exempt_images == ()
    capsys.readouterr()
    # a second quarter on the same behaviour: what was applied is no longer found
    assert _conf(site, "-o", "json") == 1
    found = json.loads(capsys.readouterr().out)["findings"]
    # only the consequence: curl is listed now, so the exception that silenced it is redundant
    assert [(f["rule"], f["subject"]) for f in found] == [
        ("exception-stale", "exception research_curl")]
    assert "now in the agents' processes list" in found[0]["message"]


def test_store_is_required(site: Path) -> None:
    assert main(["conformance", "-f", str(site / "corral.yaml")]) == 2
