"""Findings of the reports (``corral audit`` and the maintenance reports), and their text and
SARIF forms.

Each report module (``verify.audit``, ``maintain.inventory``, ``vulns``, ``conformance``) owns a
table of ``Rule`` values; a finding names its rule, the subject (an object, an image, an agent, a
policy entry) and where the evidence came from. SARIF 2.1.0 is what code-scanning UIs read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

Level = Literal["error", "warning", "note"]
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    level: Level
    title: str
    help: str


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    subject: str
    source: str
    message: str

    def as_dict(self, rules: Mapping[str, Rule]) -> dict[str, Any]:
        return {**asdict(self), "level": rules[self.rule].level, "help": rules[self.rule].help}


class Reported(Protocol):
    """What SARIF needs of a finding (``Finding`` here, ``verify.audit.Finding``)."""

    @property
    def rule(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def message(self) -> str: ...


def _location(f: Reported) -> dict[str, Any]:
    location: dict[str, Any] = {"logicalLocations": [{"fullyQualifiedName": f.subject,
                                                      "kind": "resource"}]}
    # a file is a location; "-" (stdin), "(store)"-style and "rendered:" sources are not
    if f.source and not f.source.startswith(("(", "-", "rendered:")):
        location["physicalLocation"] = {"artifactLocation": {"uri": f.source}}
    return location


def to_sarif(findings: Iterable[Reported], rules: Mapping[str, Rule], tool: str,
             version: str) -> dict[str, Any]:
    """SARIF 2.1.0, one run, every rule described."""
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": {
            "name": tool, "version": version,
            "informationUri": "https://github.com/corral-dev/corral",
            "rules": [{"id": r.id, "name": r.id, "shortDescription": {"text": r.title},
                       "help": {"text": r.help}, "defaultConfiguration": {"level": r.level}}
                      for r in rules.values()]}},
        "results": [{"ruleId": f.rule, "level": rules[f.rule].level,
                     "message": {"text": f"{f.subject}: {f.message}"},
                     "locations": [_location(f)]} for f in findings],
    }]}


def to_text(findings: Iterable[Finding], rules: Mapping[str, Rule]) -> str:
    return "".join(f"{rules[f.rule].level}: {f.rule}: {f.subject}: {f.message}\n"
                   f"  fix: {rules[f.rule].help}\n" for f in findings)
