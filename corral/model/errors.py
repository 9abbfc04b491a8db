"""Errors and warnings about a policy file, each naming the file, the path inside it and the fix.

Sits under the loader: ``load.py`` turns pydantic and YAML errors into ``Problem`` values so
every caller (CLI, gateway reload, review --apply) reports them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]


def format_path(loc: Loc) -> str:
    """``('spec', 'agents', 1, 'egress', 'allow', 3)`` -> ``spec.agents[1].egress.allow[3]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(document)"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or suspicious) in a policy file."""

    file: str
    path: str
    message: str
    line: int | None = None
    column: int | None = None
    severity: str = "error"  # "error" | "warning"

    def where(self) -> str:
        pos = f":{self.line}:{self.column}" if self.line is not None else ""
        return f"{self.file}{pos}"

    def __str__(self) -> str:
        return f"{self.where()}: {self.severity}: {self.path}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "message": self.message,
        }


class PolicyError(Exception):
    """The policy cannot be used; ``problems`` lists every error found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        head = f"{n} error{'s' if n != 1 else ''} in policy"
        super().__init__(head + "\n" + "\n".join(f"  {p}" for p in self.problems))
