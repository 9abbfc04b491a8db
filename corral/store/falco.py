"""Falco events (``http_output`` JSON) -> the agent they belong to and the rows they add.

Sits between Falco's event stream and ``aggregates.py``. Attribution, in order:
1. the pod's labels (``k8s.pod.labels`` as ``a:b,c:d``, or ``k8s.pod.label[a]`` /
   ``k8s.pod.label.a`` fields) matched against the policy's agent selectors (matchLabels);
2. the rule name convention of corral's compiled rules, ``corral: <agent>: ...``;
3. a rule tag ``corral.agent:<agent>`` (or ``corral.dev/agent=<agent>``).
Otherwise the event is kept under ``UNATTRIBUTED`` (visible in the review, never dropped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from corral.store.access import day_number, to_utc_text

UNATTRIBUTED: Final = "(unattributed)"
Selectors = Mapping[str, Mapping[str, str]]  # agent name -> matchLabels

_RULE_AGENT = re.compile(r"^corral:\s*([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\s*:")
_TAG_PREFIXES: Final = ("corral.agent:", "corral.dev/agent=", "corral.dev/agent:")
_LABEL_FIELD = re.compile(r"^k8s\.pod\.label(?:\[(.+)\]|\.(.+))$")


@dataclass(frozen=True, slots=True)
class FalcoFacts:
    """What the store keeps of one Falco event."""

    agent: str
    rule: str
    priority: str
    time: str
    day: int
    proc: str
    parent: str
    file: str
    image: str


def pod_labels(fields: Mapping[str, Any]) -> dict[str, str]:
    """Pod labels from Falco output fields (either the ``labels`` list or single-label fields)."""
    out: dict[str, str] = {}
    raw = fields.get("k8s.pod.labels")
    if isinstance(raw, str):
        for part in raw.strip("()[]{} ").split(","):
            k, sep, v = part.strip().partition(":")
            if sep and k:
                out[k.strip()] = v.strip()
    elif isinstance(raw, Mapping):
        out.update({str(k): str(v) for k, v in raw.items()})
    for name, value in fields.items():
        m = _LABEL_FIELD.match(name)
        if m and isinstance(value, str):
            out[m.group(1) or m.group(2)] = value
    return out


def agent_of(event: Mapping[str, Any], selectors: Selectors | None = None) -> str:
    """The agent a Falco event belongs to (see the module docstring for the order)."""
    fields = event.get("output_fields")
    labels = pod_labels(fields) if isinstance(fields, Mapping) else {}
    if labels and selectors:
        for name, selector in selectors.items():
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                return name
    rule = event.get("rule")
    if isinstance(rule, str):
        m = _RULE_AGENT.match(rule)
        if m:
            return m.group(1)
    tags = event.get("tags")
    if isinstance(tags, list):
        for tag in tags:
            for prefix in _TAG_PREFIXES:
                if isinstance(tag, str) and tag.startswith(prefix) and len(tag) > len(prefix):
                    return tag[len(prefix):]
    return UNATTRIBUTED


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    return "" if value is None else str(value)


def facts(event: Any, selectors: Selectors | None = None) -> FalcoFacts:
    """Validate one Falco event and extract what is aggregated; ValueError says what is wrong."""
    if not isinstance(event, Mapping):
        raise ValueError("expected a Falco event object (http_output JSON)")
    rule, when = event.get("rule"), event.get("time")
    if not isinstance(rule, str) or not rule:
        raise ValueError("field 'rule': expected the Falco rule name")
    if not isinstance(when, str) or len(when) < 10:
        raise ValueError(f"field 'time': expected RFC 3339 time, got {when!r}")
    t = when if when.endswith("Z") and "." in when else to_utc_text(when)
    fields = event.get("output_fields")
    if not isinstance(fields, Mapping):
        fields = {}
    image = _text(fields, "container.image.repository") or _text(fields, "container.image")
    return FalcoFacts(
        agent=agent_of(event, selectors), rule=rule,
        priority=str(event.get("priority") or ""), time=t, day=day_number(t[:10]),
        proc=_text(fields, "proc.name"), parent=_text(fields, "proc.pname"),
        file=_text(fields, "fd.name"), image=image,
    )
