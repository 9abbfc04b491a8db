"""Falco evidence on one machine: the compiled rules in Debian's sysdig, replayed over captures,
and the alert Falco would post, sent to ``corral serve``.

Where it sits: used by ``corral verify --local`` and ``corral drill --local``. There is no live
capture here (Falco and sysdig need a kernel driver no container can load), so the evidence is,
honestly labelled per result:

- ``replay``: sysdig reads a recorded capture through the agent's compiled rule and selects the
  events listed. Captures carry no Kubernetes metadata, so the agent's scope macro is relaxed to
  ``container.id != host`` (any container), exactly as the Falco engine tests do, and said so;
- ``compiled``: no capture of the behaviour exists; the rule (lists and macros expanded) compiles
  in sysdig and names the process in its list.

Captures: ``$CORRAL_FALCO_TRACES`` or the shared corpus (``corpora/falco/traces``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from corral.compile import falco
from corral.compile.falco_expand import Expanded, ExpandedRule, expand
from corral.model.images import parse_image
from corral.model.policy import Agent, Policy
from corral.model.runtime import RuleKind

SYSDIG_TIMEOUT_S = 60
_CANDIDATES = (
    Path(__file__).resolve().parents[3] / "shared" / "corpora" / "falco" / "traces",
    Path("/work/shared/corpora/falco/traces"),
)
# Behaviour -> (capture, what it shows). Only captures whose content matches the behaviour.
CAPTURES: dict[RuleKind, tuple[str, str]] = {
    "shell": ("psp_run_as_user_0_container.scap", "bash runs ls in a container"),
    "unexpected_process": ("psp_run_as_user_0_container.scap", "bash runs ls in a container"),
}


def traces_dir() -> Path | None:
    env = os.environ.get("CORRAL_FALCO_TRACES")
    for p in ([Path(env)] if env else []) + list(_CANDIDATES):
        if (p / "empty.scap").is_file():
            return p
    return None


def unavailable_reason() -> str | None:
    if shutil.which("sysdig") is None:
        return "Debian sysdig is not installed (scripts/dev installs it)"
    if traces_dir() is None:
        return "no Falco captures found (set CORRAL_FALCO_TRACES to a folder with *.scap)"
    return None


@dataclass(frozen=True, slots=True)
class Evidence:
    ok: bool
    basis: str  # replay | compiled
    text: str


def rules(policy: Policy, overrides: dict[str, str] | None = None) -> Expanded:
    return expand(yaml.safe_load(falco.rules_text(policy)), overrides)


def rule_for(policy: Policy, agent: Agent, kind: RuleKind,
             overrides: dict[str, str] | None = None) -> ExpandedRule | None:
    return rules(policy, overrides).rules.get(falco.rule_name(kind, agent.name))


def _sysdig(trace: Path, condition: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["timeout", str(SYSDIG_TIMEOUT_S), "sysdig", "-r", str(trace), "-p",
                           "*%evt.num %evt.type %proc.name %proc.pname %container.id", condition],
                          capture_output=True, text=True, check=False)


def replay(policy: Policy, agent: Agent, kind: RuleKind) -> Evidence:
    """Replay the capture of ``kind`` through the agent's rule, scope relaxed to any container."""
    traces = traces_dir()
    name = falco.rule_name(kind, agent.name)
    relaxed = {falco.scope_macro(agent.name): "container.id != host"}
    rule = rule_for(policy, agent, kind, relaxed)
    if traces is None or rule is None:
        why = "no captures" if traces is None else f"the policy renders no rule {name!r}"
        return Evidence(False, "replay", why)
    capture, shows = CAPTURES[kind]
    done = _sysdig(traces / capture, rule.condition)
    if done.returncode != 0:
        return Evidence(False, "replay", f"sysdig refused {name!r}: {done.stderr.strip()[:300]}")
    events = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    text = (f"sysdig replay of {capture} ({shows}; scope relaxed to any container, the capture "
            f"has no Kubernetes metadata): rule {name!r} selected {len(events)} events"
            + (f", first: {events[0]}" if events else ""))
    return Evidence(bool(events), "replay", text)


def compiled(policy: Policy, agent: Agent, kind: RuleKind, process: str) -> Evidence:
    """The rule compiles in sysdig and its expanded condition names ``process``."""
    traces = traces_dir()
    name = falco.rule_name(kind, agent.name)
    rule = rule_for(policy, agent, kind)
    if traces is None or rule is None:
        return Evidence(False, "compiled", "no captures" if traces is None
                        else f"the policy renders no rule {name!r}")
    done = _sysdig(traces / "empty.scap", rule.condition)
    if done.returncode != 0:
        return Evidence(False, "compiled", f"sysdig refused {name!r}: {done.stderr.strip()[:300]}")
    named = process in re.split(r"[\s(),]+", rule.condition)
    return Evidence(named, "compiled",
                    f"rule {name!r} compiles in sysdig and {'names' if named else 'does NOT name'}"
                    f" {process!r}; no capture of it to replay (no live capture here)")


def alert(policy: Policy, agent: Agent, kind: RuleKind, *, pod: str, process: str,
          parent: str) -> dict[str, Any]:
    """The JSON Falco's http_output posts for this rule firing in ``pod``."""
    rule = rule_for(policy, agent, kind)
    name = falco.rule_name(kind, agent.name)
    labels = ", ".join(f"{k}:{v}" for k, v in agent.selector.items())
    fields = {
        "k8s.ns.name": policy.spec.namespace, "k8s.pod.name": pod,
        "k8s.pod.labels": labels, "container.id": "0c0ffee0cafe",
        "container.image.repository": parse_image(policy.spec.gateway.image).name,
        "proc.name": process, "proc.pname": parent,
        "proc.cmdline": process, "proc.exepath": f"/usr/bin/{process}",
        "user.name": "nonroot", "user.uid": 65532,
    }
    return {
        "hostname": "corral-lab",
        "output": f"corral agent={agent.name}: drill {kind} process={process} pod={pod}",
        "output_fields": fields,
        "priority": (rule.priority if rule else "Warning").capitalize(),
        "rule": name,
        "source": "syscall",
        "tags": list(rule.tags) if rule else ["corral"],
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
