"""Helpers for the Falco tests: the shared corpora, Debian's sysdig, and small policies.

sysdig is run with ``timeout`` and on recorded captures only (``-r``): it never opens a live
capture here. A missing sysdig skips the engine tests (CI installs it via scripts/dev).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.compile.falco import rules_text
from corral.compile.falco_expand import Expanded, expand
from corral.model.load import parse_policy
from corral.model.policy import Policy
from tests import corpora

CORPORA = corpora.FALCO
TRACES = CORPORA / "traces"
EMPTY = TRACES / "empty.scap"
SYSDIG = shutil.which("sysdig")
SYSDIG_TIMEOUT_S = 60

needs_sysdig = pytest.mark.skipif(SYSDIG is None, reason="Debian sysdig is not installed")
needs_corpora = pytest.mark.skipif(not CORPORA.is_dir(), reason="Falco corpora not present")


@dataclass(frozen=True, slots=True)
class Run:
    code: int
    out: str
    err: str


def sysdig(*args: str) -> Run:
    assert SYSDIG is not None
    proc = subprocess.run(
        ["timeout", str(SYSDIG_TIMEOUT_S), SYSDIG, *args],
        capture_output=True, text=True, check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def compiles(condition: str) -> Run:
    """Compile a filter in sysdig by reading the empty capture through it."""
    return sysdig("-r", str(EMPTY), condition)


def formats(output: str) -> Run:
    """Check an output format in sysdig (unknown %fields are refused)."""
    return sysdig("-r", str(EMPTY), "-p", output, "evt.num = 0")


def matching_events(trace: Path, condition: str) -> list[str]:
    """Event numbers (with process and fd) a condition selects in a capture."""
    run = sysdig("-r", str(trace), "-p", "*%evt.num %evt.type %proc.name %proc.pname %fd.name",
                 condition)
    assert run.code == 0, f"sysdig failed on {trace.name}: {run.err or run.out}"
    return [line for line in run.out.splitlines() if line.strip()]


def supported_fields() -> set[str]:
    """Every field name in Falco's supported-fields reference."""
    text = (CORPORA / "supported-fields.md").read_text(encoding="utf-8")
    return set(re.findall(r"^`([a-z0-9_.]+)` \|", text, flags=re.MULTILINE))


BASE: dict[str, Any] = {
    "apiVersion": "corral.dev/v1alpha1",
    "kind": "Policy",
    "metadata": {"name": "falco-test"},
    "spec": {
        "namespace": "ai-workloads",
        "agents": [{
            "name": "research",
            "selector": {"app": "research-agent", "app.kubernetes.io/part-of": "agents"},
            "processes": ["python3", "node"],
        }],
    },
}


def policy(agent: dict[str, Any] | None = None, runtime: dict[str, Any] | None = None,
           more_agents: list[dict[str, Any]] | None = None) -> Policy:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    doc["spec"]["agents"][0].update(agent or {})
    doc["spec"]["agents"] += more_agents or []
    if runtime is not None:
        doc["spec"]["runtime"] = runtime
    # JSON is YAML 1.2 as the loader reads it; PyYAML writes YAML 1.1, where a string like 08 or
    # 0E0 goes out unquoted and comes back as a number.
    parsed, _warnings = parse_policy(json.dumps(doc), "test.yaml")
    return parsed


def documents(p: Policy) -> list[dict[str, Any]]:
    docs = yaml.safe_load(rules_text(p))
    assert isinstance(docs, list)
    return docs


def expanded(p: Policy, overrides: dict[str, str] | None = None) -> Expanded:
    return expand(documents(p), overrides)
