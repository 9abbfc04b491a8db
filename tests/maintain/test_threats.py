"""``corral threats``: the threat model of the fleet after a quarter of policy changes, with the
last drill's outcomes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from corral.cli import main
from corral.maintain import threat
from corral.model.load import parse_policy
from corral.verify.catalogue import TECHNIQUES
from corral.verify.drill import ControlResult, Score, to_json
from tests.maintain import fleet

# Mid-quarter: a paste site and a scraper agent were tried, then taken out again by the end.
POLICY_MID_QUARTER = fleet.POLICY_LAST_QUARTER.replace(
    "          - forecast.weather.gov\n",
    "          - forecast.weather.gov\n          - paste.ee\n").replace(
    "    - name: coder\n",
    "    - name: scraper\n      selector: {app: scraper}\n      egress:\n"
    "        allow: [en.wikipedia.org]\n    - name: coder\n")


def _drill(verdicts: dict[str, str]) -> dict[str, object]:
    """corral drill -o json with every technique as expected, except the ``verdicts`` given."""
    scores = []
    for t in TECHNIQUES:
        want = verdicts.get(t.id, "blocked" if t.expect == "block" else "detected")
        scores.append(Score(t, tuple(
            ControlResult(c, want if i == 0 else "not_available", f"{c} evidence")
            for i, c in enumerate(t.controls))))
    return to_json(scores, target="local", skipped={})


@pytest.fixture
def history(site: Path) -> Path:
    (site / "mid-quarter.yaml").write_text(POLICY_MID_QUARTER)
    (site / "drill.json").write_text(json.dumps(_drill({"byte-quota": "missed"})))
    (site / "last-drill.json").write_text(json.dumps(_drill({"cdn-front-sni-mismatch":
                                                             "missed"})))
    return site


def _doc(site: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["threats", "-f", str(site / "corral.yaml"), "--date", "2026-12-01",
                 *extra]) == 0
    return capsys.readouterr().out


def _section(doc: str, title: str) -> str:
    return doc.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_quarter_of_changes(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _doc(history, capsys, "--previous", str(history / "last-quarter.yaml"), "--drill",
               str(history / "drill.json"), "--previous-drill", str(history / "last-drill.json"))
    changes = _section(doc, "Changes since the previous threat model")
    assert "agent `research`: widened to `*.weather.gov`" in changes
    assert "agent `research`: new destination `en.wikipedia.org`" in changes
    assert "forecast.weather.gov" not in changes  # still reachable, below the wildcard
    assert "agent `coder`: new private range `10.96.0.0/12`" in changes
    assert "agent `coder`: new process `npm`" in changes
    assert "registry `ghcr.io/corral-dev/` approved" in changes
    assert "new admission exemption `registry.example.com/debug/*` from `registries`" in changes
    assert "new Falco exception `coder_cc1` (unexpected_process)" in changes
    # what came and went inside the quarter is not a change of the quarter
    assert "paste.ee" not in changes and "scraper" not in changes
    assert "`byte-quota`: blocked -> missed (NOT OK)" in changes
    assert "`cdn-front-sni-mismatch`: missed -> blocked" in changes


def test_mid_quarter_diff_sees_the_paste_site_and_the_new_agent(
        history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, _ = parse_policy(fleet.POLICY_LAST_QUARTER)
    mid, _ = parse_policy(POLICY_MID_QUARTER)
    changes = threat.capability_changes(old, mid)
    assert "agent `research`: new destination `paste.ee`" in changes
    assert "new agent `scraper`: may reach `en.wikipedia.org`" in changes
    assert any("paste.ee (paste)" in g for g in threat.policy_gaps(mid))
    assert threat.capability_changes(mid, old)[-1] == "agent `scraper` removed"


def test_assets_techniques_and_gaps(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _doc(history, capsys, "--drill", str(history / "drill.json"))
    assets = _section(doc, "Assets: the agents and their reach")
    assert "| may reach | `api.openai.com`, `*.weather.gov`, `en.wikipedia.org` |" in assets
    assert "| rate / upload quota / tunnels | 600/min / 50Mi/h / 1024 |" in assets
    assert "| egress mode | learn (nothing is refused: allowlist logged only) |" in assets
    assert ("| admission exemptions (whole namespace) | `registry.example.com/debug/*` from "
            "registries, `ghcr.io/corral-dev/coder:latest` from run_as_non_root |") in assets
    techniques = _section(doc, "Techniques and the controls that answer them")
    rows = [r for r in techniques.splitlines() if r.startswith("| ") and "T1" in r]
    assert len(rows) == len(TECHNIQUES)
    quota = next(r for r in rows if r.startswith("| exhaust the byte quota"))
    assert quota.endswith("| gateway: missed | missed (NOT OK) |")
    shell = next(r for r in rows if r.startswith("| run a shell"))
    assert "falco: detected, control-plane: not_available | detected (ok) |" in shell
    gaps = _section(doc, "Known gaps")
    assert "**DNS exfiltration through the cluster resolver**" in gaps
    assert "agent `coder` has no upload quota" in gaps
    assert "No previous policy was given" in doc


def test_tables_are_well_formed(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _doc(history, capsys, "--drill", str(history / "drill.json"))
    table: list[int] = []
    for line in [*doc.splitlines(), ""]:
        if line.startswith("|"):
            table.append(len(re.findall(r"(?<!\\)\|", line)))
        elif table:
            assert len(set(table)) == 1, table
            table = []


def test_same_inputs_same_bytes_and_out_file(history: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    first = _doc(history, capsys, "--drill", str(history / "drill.json"))
    _doc(history, capsys, "--drill", str(history / "drill.json"), "--out",
         str(history / "THREAT_MODEL.md"))
    assert (history / "THREAT_MODEL.md").read_text() == first


def test_bad_drill_is_a_clear_error(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (history / "bad.json").write_text('{"checks": []}')
    assert main(["threats", "-f", str(history / "corral.yaml"), "--drill",
                 str(history / "bad.json")]) == 2
    assert "not corral drill JSON" in capsys.readouterr().err
