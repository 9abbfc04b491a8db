"""Enrich step: which agent an event belongs to, and the subject incidents group on.

Falco alerts carry pod labels (``k8s.pod.labels`` = "k1:v1,k2:v2", or ``k8s.pod.label[k]``
fields) and the namespace; the first policy agent whose selector is contained in the labels, in
the policy's namespace, owns the pod (the ``corral.dev/agent`` label, when present, wins).
Without labels, corral's compiled rule names (``corral <Kind> [<agent>]``) and the tag
``corral.agent:<agent>`` name the agent (the same order as corral.store.falco.agent_of).
Gateway lines already name their agent (the listener port is the identity).
"""

from __future__ import annotations

import re
from typing import Any

from corral.control.events import Event
from corral.control.processors import Outbox

AGENT_LABEL = "corral.dev/agent"
# corral's compiled rules: "corral <Kind> [<agent>]" (also "corral: <agent>: ...")
_RULE_AGENT = re.compile(r"^corral(?::\s*([a-z0-9][-a-z0-9]*)\s*:| .*\[([a-z0-9][-a-z0-9]*)\]$)")
_TAG_PREFIX = "corral.agent:"
_CACHE_MAX = 10_000


class Enrich:
    def __init__(self, namespace: str, selectors: dict[str, dict[str, str]]) -> None:
        self._namespace = namespace
        self._selectors = selectors  # agent name -> matchLabels, in policy order
        self._cache: dict[tuple[str | None, str], str | None] = {}

    def __call__(self, ev: Event, out: Outbox) -> bool:
        if ev.agent is None:
            ev.agent = self._cached(ev) or self._named(ev)
        if ev.pod:
            ev.subject = f"pod:{ev.namespace or '-'}/{ev.pod}"
        elif ev.agent:
            ev.subject = f"agent:{ev.agent}"
        else:
            ev.subject = f"host:{ev.hostname or 'unknown'}"
        out.count(ev)
        return True

    def _cached(self, ev: Event) -> str | None:
        """Falco sends the same labels string for every alert of a pod: look that up first
        (it lists every label, so single ``k8s.pod.label[...]`` fields add nothing)."""
        if ev.labels is None:
            return self.agent_for(ev.namespace, labels_of(ev))
        key = (ev.namespace, ev.labels)
        if key in self._cache:
            return self._cache[key]
        agent = self.agent_for(ev.namespace, labels_of(ev))
        self._cache[key] = agent
        return agent

    def agent_for(self, namespace: str | None, labels: dict[str, str] | None) -> str | None:
        if not labels or (namespace is not None and namespace != self._namespace):
            return None
        key = (namespace, ",".join(f"{k}:{v}" for k, v in sorted(labels.items())))
        if key not in self._cache:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = self._match(labels)
        return self._cache[key]

    def _named(self, ev: Event) -> str | None:
        m = _RULE_AGENT.match(ev.rule)
        named = (m.group(1) or m.group(2)) if m else None
        if named in self._selectors:
            return named
        for tag in ev.tags:
            if tag.startswith(_TAG_PREFIX) and tag[len(_TAG_PREFIX):] in self._selectors:
                return tag[len(_TAG_PREFIX):]
        return None

    def _match(self, labels: dict[str, str]) -> str | None:
        named = labels.get(AGENT_LABEL)
        if named in self._selectors:
            return named
        for agent, selector in self._selectors.items():
            if all(labels.get(k) == v for k, v in selector.items()):
                return agent
        return None


def labels_of(ev: Event) -> dict[str, str] | None:
    """Pod labels from ``k8s.pod.labels`` and any ``k8s.pod.label[...]`` / ``.key`` fields."""
    labels = parse_labels(ev.labels) if ev.labels else {}
    for key, value in ev.fields.items():
        name = _label_field(key)
        if name is not None and isinstance(value, str) and value not in ("", "<NA>"):
            labels[name] = value
    return labels or None


def parse_labels(raw: Any) -> dict[str, str]:
    """Falco's "k1:v1,k2:v2" (label keys hold no ':'; a dict is accepted as well)."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    out: dict[str, str] = {}
    for part in str(raw).strip("[]").split(","):
        k, sep, v = part.strip().partition(":")
        if sep and k:
            out[k.strip()] = v.strip()
    return out


def _label_field(key: str) -> str | None:
    if key.startswith("k8s.pod.label["):
        return key[len("k8s.pod.label["):].rstrip("]")
    if key.startswith("k8s.pod.label.") and key != "k8s.pod.labels":
        return key[len("k8s.pod.label."):]
    return None
