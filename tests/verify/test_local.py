"""corral verify --local and corral drill --local, end to end as a user runs them: the real CLI,
the real gateway and control plane, network namespaces, sysdig and the CEL engine. Root only.

A weakened policy (no SNI check, no quota, an allowlist that opens the lab's private names) must
turn the drill red: the scorecard is proven able to fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.cli import main
from corral.verify import lab

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "corral.yaml"

netns = pytest.mark.netns
needs_lab = pytest.mark.skipif(lab.unavailable_reason() is not None,
                               reason=lab.unavailable_reason() or "")


def corral(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral", *argv], capture_output=True,
                          text=True, timeout=170, cwd=ROOT, check=False)


@netns
@needs_lab
def test_verify_local_is_green_on_the_example_policy() -> None:
    done = corral("verify", "--local", "-f", str(EXAMPLE), "-o", "json")
    report = json.loads(done.stdout)
    bad = [c for c in report["checks"] if c["status"] != "passed"]
    assert done.returncode == 0 and not bad, json.dumps(bad, indent=1) + done.stderr[-2000:]
    names = {c["name"] for c in report["checks"]}
    assert {"direct-egress-blocked", "gateway-allows", "gateway-denies", "metadata-refused",
            "private-address-refused", "unapproved-image-refused", "privileged-pod-refused",
            "unexpected-process-detected", "falco-alert-becomes-incident"} <= names
    evidence = {c["name"]: c["evidence"] for c in report["checks"]}
    assert "decision=" not in evidence["gateway-denies"]  # the line is rendered, not dumped
    assert "deny reason=denied_by_rule rule=*.pastebin.com" in evidence["gateway-denies"]
    assert "reason=forbidden_address" in evidence["metadata-refused"]


@netns
@needs_lab
def test_drill_local_blocks_or_detects_every_technique() -> None:
    done = corral("drill", "--local", "-f", str(EXAMPLE), "-o", "json")
    report = json.loads(done.stdout)
    scores = {t["id"]: t for t in report["techniques"]}
    bad = {i: t for i, t in scores.items() if not t["ok"]}
    assert done.returncode == 0 and not bad, json.dumps(bad, indent=1) + done.stderr[-2000:]
    assert len(scores) == 15
    forged = scores["forge-control-event"]  # no credential, wrong token, ingest token: 401
    assert forged["verdict"] == "blocked" and forged["controls"][0]["evidence"].count("401") == 6
    for t in scores.values():
        assert t["verdict"] in ("blocked", "detected")
        assert all(c["evidence"] for c in t["controls"])
    assert scores["dns-rebinding"]["verdict"] == "blocked"
    assert scores["run-shell"]["controls"][0]["basis"] == "replay"


def weakened(tmp_path: Path) -> Path:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    research = doc["spec"]["agents"][0]
    research["egress"]["sni_check"] = False
    research["egress"].pop("quota")
    research["egress"]["allow_cidrs"] = ["169.254.0.0/16"]
    path = tmp_path / "weak.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@netns
@needs_lab
def test_drill_turns_red_on_a_weakened_policy(tmp_path: Path) -> None:
    done = corral("drill", "--local", "-f", str(weakened(tmp_path)), "-o", "json",
                  "--only", "cdn-front-sni-mismatch", "--only", "byte-quota",
                  "--only", "cloud-metadata", "--only", "exfil-paste-site")
    assert done.returncode == 1, done.stdout + done.stderr
    scores = {t["id"]: t for t in json.loads(done.stdout)["techniques"]}
    assert scores["cdn-front-sni-mismatch"]["verdict"] == "missed"
    assert scores["byte-quota"]["verdict"] == "missed"
    assert "no egress.quota" in scores["byte-quota"]["controls"][0]["evidence"]
    meta = {c["control"]: c for c in scores["cloud-metadata"]["controls"]}
    assert meta["gateway"]["result"] == "missed"  # allow_cidrs opened the metadata range
    assert meta["network"]["result"] == "blocked"  # the boundary still holds: still blocked
    assert scores["exfil-paste-site"]["ok"]


def test_without_root_the_requirement_is_explained(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    for verb in (["verify", "--local"], ["drill", "--local"]):
        assert main([*verb, "-f", str(EXAMPLE)]) == 2
        err = capsys.readouterr().err
        assert "needs root" in err and "network namespaces" in err
