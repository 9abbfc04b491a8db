"""``corral images``: the inventory of a fleet with planted issues, in each output format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.cli import main
from corral.maintain import inventory as inv
from corral.model.load import parse_policy
from tests.maintain import fleet


def _run(site: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["images", "-f", str(site / "corral.yaml"), "--manifests", str(site / "k8s"),
                 "--cluster", str(site / "dump.json"), "--store", str(site / "behaviour.db"),
                 "--control-store", str(site / "control.db"), *extra])
    return code, capsys.readouterr().out


def test_planted_issues_are_found_and_nothing_else(site: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(site, capsys, "-o", "json")
    assert code == 1
    doc = json.loads(out)
    got = sorted((f["rule"], f["subject"]) for f in doc["findings"])
    assert got == [
        ("image-mutable-tag", "ghcr.io/corral-dev/coder:latest"),
        ("image-not-pinned", "docker.io/library/python:3.12"),
        ("image-unapproved", "docker.io/kalilinux/kali-rolling"),
        ("image-unapproved", "docker.io/library/python:3.12"),
        ("image-undeclared", "docker.io/kalilinux/kali-rolling"),
        ("image-undeclared", "docker.io/library/python:3.12"),
    ]
    images = {e["image"]: e for e in doc["images"]}
    research = images[f"registry.example.com/agents/research:1.4@{fleet.RESEARCH_DIGEST}"]
    # the Falco sighting (repository only) joined the declared, running image
    assert research["sources"] == ["cluster", "falco", "manifest"]
    assert research["agents"] == ["research"] and research["approved"]
    coder = images["ghcr.io/corral-dev/coder:latest"]
    assert {s["image_id"] for s in coder["seen"] if s["source"] == "cluster"} == {
        f"ghcr.io/corral-dev/coder@{fleet.CODER_DIGEST}"}
    # outside the agents' namespace: listed, approval shown, no agent findings
    assert images["registry.k8s.io/coredns/coredns:v1.11.1"]["namespaces"] == ["kube-system"]
    assert not images["registry.k8s.io/coredns/coredns:v1.11.1"]["approved"]


def test_text_groups_by_agent_then_namespace(site: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(site, capsys)
    assert code == 1
    heads = [line for line in out.splitlines() if line and not line.startswith((" ", "error",
                                                                                 "warning"))]
    assert heads[:4] == ["agent coder", "agent research", "namespace egress-gateway",
                         "namespace kube-system"]
    assert "6 images: 5 errors, 1 warning" in out


def test_sarif_names_rules_and_results(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(site, capsys, "-o", "sarif")
    run = json.loads(out)["runs"][0]
    assert code == 1
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == set(inv.RULES)
    assert len(run["results"]) == 6
    assert all(r["locations"][0]["logicalLocations"] for r in run["results"])


def test_exempt_and_approved_images_are_clean(tmp_path: Path) -> None:
    policy, _ = parse_policy(fleet.POLICY, "corral.yaml")
    seen = [inv.Sighting("registry.example.com/debug/toolbox:1", "ai-workloads", "Pod/x",
                         "coder", "cluster", "dump"),
            inv.Sighting("registry.example.com.evil.io/agents/x:1@sha256:" + "ab" * 32,
                         "ai-workloads", "Pod/y", "coder", "cluster", "dump")]
    found = inv.build(seen, policy).findings
    # the exempt debug image is not an approval finding (only the tag one); the look-alike is
    assert sorted((f.rule, f.subject.split("/")[0]) for f in found) == [
        ("image-not-pinned", "registry.example.com"),
        ("image-unapproved", "registry.example.com.evil.io")]


def test_no_source_is_a_usage_error(site: Path) -> None:
    assert main(["images", "-f", str(site / "corral.yaml")]) == 2


def test_a_store_that_is_not_corrals_is_a_clear_error(site: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bogus = site / "bogus.db"
    bogus.write_bytes(b"not sqlite at all" * 100)
    assert main(["images", "-f", str(site / "corral.yaml"), "--store", str(bogus)]) == 2
    assert "not a corral behaviour store" in capsys.readouterr().err
