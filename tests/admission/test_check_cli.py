"""``corral check`` end to end through the CLI: inputs of every shape, formats, exit codes."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.cli import main
from tests.admission.helpers import pod, workload

EXAMPLE = Path(__file__).parents[2] / "examples" / "corral.yaml"
GOOD = pod()
BAD = pod({"containers": [{"name": "web", "image": "nginx"}]}, name="bad")


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["check", "-f", str(EXAMPLE), *args])
    return code, capsys.readouterr().out


def write(tmp: Path, name: str, *docs: Any) -> Path:
    path = tmp / name
    path.write_text("---\n".join(yaml.safe_dump(d) for d in docs))
    return path


def test_clean_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(capsys, str(write(tmp_path, "g.yaml", GOOD, workload("Deployment"))))
    assert code == 0 and "2 objects checked" in out and "0 violations" in out


def test_violations_exit_1_and_name_file_line_object_container(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "m.yaml", GOOD, BAD)
    code, out = check(capsys, str(path))
    assert code == 1
    first = out.splitlines()[0]
    line = path.read_text().splitlines().index("---") + 2
    assert first.startswith(f"{path}:{line}: Pod/ai-workloads/bad container web: registries:")


def test_unreadable_input_exits_2_with_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(GOOD) + "---\nkind: Pod\nspec: [\n  - a: b\n  c\n")
    code, out = check(capsys, str(path))
    assert code == 2
    err = next(ln for ln in out.splitlines() if ln.startswith("error:"))
    assert f"{path}:" in err and "invalid YAML" in err
    lineno = int(err.split(f"{path}:")[1].split(":")[0])
    assert lineno > len(yaml.safe_dump(GOOD).splitlines())
    code, out = check(capsys, str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such file" in out


def test_folder_json_list_and_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "a.yml", GOOD)
    (tmp_path / "list.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                                    "items": [GOOD, BAD]}))
    (tmp_path / "notes.txt").write_text("not a manifest")
    code, out = check(capsys, "-o", "json", str(tmp_path))
    data = json.loads(out)
    assert code == 1 and data["summary"]["checked"] == 3
    assert {v["name"] for v in data["violations"]} == {"bad"}
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(BAD)))
    code, out = check(capsys, "-")
    assert code == 1 and "-:1: Pod/ai-workloads/bad" in out


def test_admission_review_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = pod({"containers": [{"name": "x", "image": "registry.example.com/agents/a:1",
                               "securityContext": {"privileged": True}}]})
    review = {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
              "request": {"operation": "UPDATE", "object": bad}}
    code, out = check(capsys, "-o", "json", str(write(tmp_path, "r.yaml", review)))
    assert code == 0, out  # a pod UPDATE only re-checks images


def test_sarif_and_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(write(tmp_path, "m.yaml", GOOD, BAD))
    code, out = check(capsys, "-o", "sarif", path)
    sarif = json.loads(out)
    results = sarif["runs"][0]["results"]
    rules = {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert code == 1 and sarif["version"] == "2.1.0" and results
    assert all(r["ruleId"] in rules for r in results)
    assert results[0]["locations"][0]["physicalLocation"]["region"]["startLine"] > 1
    code, out = check(capsys, "-o", "junit", path)
    suite = ET.fromstring(out.split("?>", 1)[1])
    assert code == 1 and suite.get("tests") == "2" and suite.get("failures") == "1"
    assert len(suite.findall("testcase/failure")) >= 5
