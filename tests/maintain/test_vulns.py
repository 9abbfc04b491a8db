"""``corral vulns``: Trivy and Grype reports (JSON, CycloneDX, SARIF) of the fleet's images,
one stale, joined with the inventory; and the scanner CronJob, validated and run."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from corral.cli import main
from corral.maintain.reports import ReportError, read_report, read_reports
from corral.maintain.scanner import ScannerSettings, render_scanner
from corral.model.load import parse_policy
from tests.maintain import fleet, scans

K8S_VERSION = "1.34.0"
NOW = "2026-12-01T09:00:00Z"


@pytest.fixture
def reports(site: Path) -> Path:
    scans.write_this_month(site / "reports" / "2026-11")
    scans.write_last_month(site / "reports" / "2026-10")
    return site / "reports"


def _vulns(site: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["vulns", str(site / "reports" / "2026-11"), "--previous",
                 str(site / "reports" / "2026-10"), "--now", NOW, "-f", str(site / "corral.yaml"),
                 "--manifests", str(site / "k8s"), "--cluster", str(site / "dump.json"),
                 "--store", str(site / "behaviour.db"), *extra])
    return code, capsys.readouterr().out


def test_every_format_is_read(reports: Path) -> None:
    got = {Path(r.path).name: r for r in read_reports([str(reports / "2026-11")])}
    assert {n: (r.format, r.scanner) for n, r in got.items()} == {
        "coder.grype.json": ("grype-json", "grype"), "gateway.cdx.json": ("cyclonedx", "trivy"),
        "kali.sarif": ("sarif", "trivy"), "python.trivy.json": ("trivy-json", "trivy"),
        "research.grype.json": ("grype-json", "grype"),
        "research.trivy.json": ("trivy-json", "trivy")}
    research = got["research.trivy.json"]
    assert research.digests == (fleet.RESEARCH_DIGEST,)
    assert research.created == datetime(2026, 11, 30, 3, 12, 44, 123456, tzinfo=UTC)
    assert [(v.id, v.severity, v.fixed) for v in research.vulns] == [
        ("CVE-2026-1001", "critical", "3.0.15-1"), ("CVE-2026-1002", "high", None),
        ("CVE-2026-1003", "medium", "1.34+dfsg-1.2")]
    assert [(v.id, v.severity) for v in got["research.grype.json"].vulns] == [
        ("CVE-2026-1001", "critical"), ("CVE-2026-1004", "low")]  # Negligible -> low
    cdx = got["gateway.cdx.json"].vulns[0]
    assert (cdx.id, cdx.severity, cdx.package, cdx.installed) == (
        "CVE-2026-3001", "high", "zlib1g", "1.2.13")
    kali = got["kali.sarif"]
    assert kali.image == "docker.io/kalilinux/kali-rolling:latest"
    assert [(v.id, v.severity, v.package, v.fixed) for v in kali.vulns] == [
        ("CVE-2026-4001", "critical", "xz-utils", "5.4.1-1")]


def test_running_agent_images_with_serious_findings(reports: Path, site: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _vulns(site, capsys, "-o", "json")
    assert code == 1
    doc = json.loads(out)
    got = {(e["image"].split("@")[0], e["id"]): e for e in doc["exposures"]}
    assert set(got) == {
        ("registry.example.com/agents/research:1.4", "CVE-2026-1001"),
        ("registry.example.com/agents/research:1.4", "CVE-2026-1002"),
        ("ghcr.io/corral-dev/coder:latest", "CVE-2026-2001"),
        ("docker.io/kalilinux/kali-rolling", "CVE-2026-4001")}  # Falco saw it; SARIF scanned it
    openssl = got[("registry.example.com/agents/research:1.4", "CVE-2026-1001")]
    assert openssl["scanners"] == ["grype", "trivy"] and openssl["fix_available"]
    assert openssl["exposed_days"] == 1  # first shown this month
    expat = got[("registry.example.com/agents/research:1.4", "CVE-2026-1002")]
    assert not expat["fix_available"]
    assert expat["exposed_since"].startswith("2026-10-31") and expat["exposed_days"] == 31
    # the gateway is not an agent image: its high finding is read, not reported as exposure
    assert not any("corral-dev/corral" in e["image"] for e in doc["exposures"])
    # the debug pod's only report is from August: stale, its critical finding not trusted
    assert [r["path"].rsplit("/", 1)[1] for r in doc["stale_reports"]] == ["python.trivy.json"]
    assert doc["unscanned"] == ["docker.io/library/python:3.12"]
    stale = [f for f in doc["findings"] if f["rule"] == "vuln-report-stale"]
    assert len(stale) == 1 and "122 days old" in stale[0]["message"]
    changes = {c["image"]: c for c in doc["changes_since_previous"]}
    research = changes["registry.example.com/agents/research"]
    assert [v["id"] for v in research["gone"]] == ["CVE-2026-0999"]
    assert {v["id"] for v in research["new"]} == {"CVE-2026-1001", "CVE-2026-1003",
                                                  "CVE-2026-1004"}
    assert not research["first_scan"] and changes["ghcr.io/corral-dev/corral"]["first_scan"]


def test_max_age_decides_what_is_stale(reports: Path, site: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, out = _vulns(site, capsys, "-o", "json", "--max-age", "200d")
    doc = json.loads(out)
    assert doc["stale_reports"] == [] and doc["unscanned"] == []
    assert any(e["id"] == "CVE-2026-0500" for e in doc["exposures"])
    _, out = _vulns(site, capsys, "-o", "json", "--max-age", "12h")
    assert len(json.loads(out)["stale_reports"]) == 6  # every report is older than 12 hours


def test_text_and_sarif(reports: Path, site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _vulns(site, capsys)
    assert code == 1
    assert "no fix; 31 days; agents research" in out
    assert "STALE    python:3.12" in out
    assert "4 serious findings on running agent images (2 critical), 1 stale report" in out
    _, out = _vulns(site, capsys, "-o", "sarif")
    results = json.loads(out)["runs"][0]["results"]
    assert sorted(r["ruleId"] for r in results) == [
        "vuln-critical", "vuln-critical", "vuln-high", "vuln-high", "vuln-report-stale"]


def test_not_a_report_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"kind": "Pod"}))
    with pytest.raises(ReportError, match=r"x\.json: expected a Trivy JSON, Grype JSON"):
        read_report(bad)
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="not a JSON report"):
        read_report(bad)
    bad.write_text(json.dumps(scans.sarif("a:1", "2026-11-30T00:00:00Z")
                              | {"runs": [{"tool": {"driver": {"name": "x"}}}]}))
    with pytest.raises(ReportError, match="names no image"):
        read_report(bad)


def test_other_json_in_a_report_folder_is_skipped_with_a_note(
        reports: Path, site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (reports / "2026-11" / "index.json").write_text('{"generated": "by hand"}')
    code, _ = _vulns(site, capsys)
    assert code == 1
    (reports / "2026-11" / "index.json").unlink()
    assert main(["vulns", str(reports / "2026-11" / "research.trivy.json"), "--now", NOW,
                 "-f", str(site / "corral.yaml"), "--cluster", str(site / "dump.json")]) == 1
    (reports / "x.json").write_text("[]")
    assert main(["vulns", str(reports / "x.json"), "-f", str(site / "corral.yaml"),
                 "--cluster", str(site / "dump.json")]) == 2  # named explicitly: must be one
    assert "x.json: expected a Trivy JSON" in capsys.readouterr().err


def test_a_report_without_a_time_is_dated_by_its_file(tmp_path: Path) -> None:
    doc = scans.trivy("a:1", "sha256:" + "ab" * 32, "", [])
    del doc["CreatedAt"]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    old = (datetime.now(UTC) - timedelta(days=40)).timestamp()
    os.utime(path, (old, old))
    r = read_report(path)
    assert r.created_basis == "file-mtime" and (datetime.now(UTC) - r.created).days == 40


def _scanner_objects() -> list[dict[str, object]]:
    policy, _ = parse_policy(fleet.POLICY)
    files = render_scanner(policy, ["ghcr.io/corral-dev/coder:latest"], ScannerSettings())
    return [o for f in files.values() for o in yaml.safe_load_all(f.render())]


def test_scanner_objects_validate() -> None:
    objs = _scanner_objects()
    assert [o["kind"] for o in objs] == ["ServiceAccount", "ConfigMap", "PersistentVolumeClaim",
                                         "CronJob"]
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_scanner_script_fills_the_folder_corral_reads(tmp_path: Path, site: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The CronJob's script, run with a stand-in ``trivy`` that writes a report per image."""
    assert main(["vulns", "-f", str(site / "corral.yaml"), "--cluster", str(site / "dump.json"),
                 "--render-scanner", str(tmp_path / "out")]) == 0
    docs = list(yaml.safe_load_all((tmp_path / "out/scanner/40-cronjob.yaml").read_text()))
    pod = docs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    script = pod["containers"][0]["command"][2]
    cm = yaml.safe_load((tmp_path / "out/scanner/20-images.yaml").read_text())
    (tmp_path / "config").mkdir()
    (tmp_path / "config/images.txt").write_text(cm["data"]["images.txt"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trivy"
    fake.write_text("#!/bin/sh\n# trivy image --quiet ... --output FILE IMAGE\n"
                    'for a; do last="$a"; done\nwhile [ "$1" != --output ]; do shift; done\n'
                    'printf \'{"SchemaVersion": 2, "CreatedAt": "%s", "ArtifactName": "%s", '
                    '"Results": []}\' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$last" > "$2"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    script = script.replace("/reports", str(tmp_path / "reports")).replace(
        "/config", str(tmp_path / "config"))
    done = subprocess.run(["/bin/sh", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    month = next((tmp_path / "reports").iterdir())
    got = read_reports([str(month)])
    assert sorted(r.image for r in got) == sorted(cm["data"]["images.txt"].split())
    capsys.readouterr()
    assert main(["vulns", str(month), "-f", str(site / "corral.yaml"),
                 "--cluster", str(site / "dump.json")]) == 0  # all fresh, nothing found
