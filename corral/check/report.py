"""Findings out: text for people, JSON for scripts, SARIF for code-scanning UIs, JUnit for CI.

Pure formatting over ``Outcome``/``Violation`` values and read errors; the caller prints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

import orjson

from corral import __version__
from corral.check.engine import Outcome, Violation
from corral.check.read import ReadError
from corral.compile.admission_cel import CONTROLS

FORMATS = ("text", "json", "sarif", "junit")
_SARIF_LEVEL = {"deny": "error", "warn": "warning", "audit": "note"}


@dataclass(frozen=True, slots=True)
class Run:
    outcomes: Sequence[Outcome]
    errors: Sequence[ReadError]

    @property
    def violations(self) -> list[Violation]:
        return [v for o in self.outcomes for v in o.violations]

    def summary(self) -> dict[str, int]:
        checked = [o for o in self.outcomes if o.skipped is None]
        return {
            "objects": len(self.outcomes), "checked": len(checked),
            "skipped": len(self.outcomes) - len(checked),
            "failing": sum(1 for o in checked if o.violations),
            "violations": len(self.violations), "errors": len(self.errors),
        }


def text(run: Run) -> str:
    lines = []
    for v in run.violations:
        where = f" container {','.join(v.containers)}" if v.containers else ""
        tag = "" if v.message.startswith(f"{v.control}:") else f"[{v.control}] "
        lines.append(f"{v.source}:{v.line}: {v.object_ref}{where}: {tag}{v.message}")
    lines += [f"error: {e}" for e in run.errors]
    s = run.summary()
    lines.append(f"{s['checked']} objects checked ({s['skipped']} out of scope), "
                 f"{s['failing']} failing, {s['violations']} violations, {s['errors']} errors")
    return "\n".join(lines) + "\n"


def as_json(run: Run) -> str:
    data = {
        "violations": [v.as_dict() for v in run.violations],
        "errors": [{"file": e.source, "line": e.line, "message": e.message} for e in run.errors],
        "summary": run.summary(),
    }
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"


def _location(source: str, line: int | None) -> dict[str, Any]:
    phys: dict[str, Any] = {"artifactLocation": {"uri": source}}
    if line:
        phys["region"] = {"startLine": line}
    return {"physicalLocation": phys}


def sarif(run: Run) -> str:
    rules = [{"id": name, "shortDescription": {"text": f"{name}: {text}"}}
             for name, (_, _, text) in CONTROLS.items()]
    results = [
        {"ruleId": v.control, "level": _SARIF_LEVEL.get(v.action, "error"),
         "message": {"text": f"{v.object_ref}: {v.message}"},
         "locations": [_location(v.source, v.line)]}
        for v in run.violations
    ]
    results += [{"ruleId": "input", "level": "error", "message": {"text": e.message},
                 "locations": [_location(e.source, e.line)]} for e in run.errors]
    rules.append({"id": "input", "shortDescription": {"text": "unreadable input"}})
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "corral", "version": __version__,
                                      "informationUri": "https://corral.dev", "rules": rules}},
                  "results": results}],
    }
    return json.dumps(doc, indent=2) + "\n"


def junit(run: Run) -> str:
    s = run.summary()
    suite = ET.Element("testsuite", name="corral check", tests=str(s["checked"] + s["errors"]),
                       failures=str(s["failing"]), errors=str(s["errors"]))
    for o in run.outcomes:
        if o.skipped is not None:
            continue
        case = ET.SubElement(suite, "testcase", classname=o.doc.source,
                             name=f"{o.doc.kind}/{o.doc.name} (line {o.doc.line})")
        for v in o.violations:
            where = f" container {','.join(v.containers)}" if v.containers else ""
            fail = ET.SubElement(case, "failure", type=v.control, message=v.message)
            fail.text = f"{v.object_ref}{where}: {v.message}"
    for e in run.errors:
        case = ET.SubElement(suite, "testcase", classname=e.source, name="read")
        ET.SubElement(case, "error", message=str(e))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def render(run: Run, fmt: str) -> str:
    return {"text": text, "json": as_json, "sarif": sarif, "junit": junit}[fmt](run)
