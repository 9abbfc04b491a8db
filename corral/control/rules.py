"""Names of the Falco rules in a rules file: the set ``corral serve --rules`` accepts alerts for."""

from __future__ import annotations

from pathlib import Path

import yaml


def rule_names(path: Path) -> set[str]:
    """Every ``- rule: NAME`` in a Falco rules YAML file (macros and lists are ignored)."""
    doc = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(doc, list):
        raise ValueError(f"{path}: expected a Falco rules file (a YAML list)")
    return {str(item["rule"]) for item in doc if isinstance(item, dict) and "rule" in item}
