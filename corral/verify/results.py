"""What ``corral verify`` reports: one ``Check`` per control exercised, with evidence. Pure.

A check is ``passed`` only on positive evidence (a refusal message, a log line, an incident id).
A control that could not be exercised is ``not_available`` with the reason, never ``passed``;
``error`` means the check itself broke (cluster unreachable, probe crashed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["passed", "failed", "not_available", "error"]
_MARK = {"passed": "PASS", "failed": "FAIL", "not_available": "N/A ", "error": "ERR "}


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # e.g. "direct-egress-blocked"
    control: str  # network-policy | gateway | admission | pod-security | falco | control-plane
    expected: str  # one sentence: what must happen
    status: Status
    evidence: str  # what was seen: log line, refusal message, incident id, probe result

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def passed(name: str, control: str, expected: str, evidence: str) -> Check:
    return Check(name, control, expected, "passed", evidence)


def failed(name: str, control: str, expected: str, evidence: str) -> Check:
    return Check(name, control, expected, "failed", evidence)


def unavailable(name: str, control: str, expected: str, why: str) -> Check:
    return Check(name, control, expected, "not_available", why)


def errored(name: str, control: str, expected: str, why: str) -> Check:
    return Check(name, control, expected, "error", why)


def all_passed(checks: Iterable[Check]) -> bool:
    return all(c.status == "passed" for c in checks)


def to_text(checks: list[Check], title: str) -> str:
    lines = [title]
    for c in checks:
        lines.append(f"  {_MARK[c.status]} {c.name} [{c.control}]: {c.expected}")
        lines.append(f"       {c.evidence}")
    counts = {s: sum(c.status == s for c in checks) for s in _MARK}
    lines.append(", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n)
                 or "no checks ran")
    return "\n".join(lines) + "\n"


def to_json(checks: list[Check], **extra: Any) -> dict[str, Any]:
    return {**extra, "ok": all_passed(checks), "checks": [c.as_dict() for c in checks]}
