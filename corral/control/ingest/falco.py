"""Falco ``http_output`` JSON -> ``Event``.

Falco posts one JSON object per alert: ``output``, ``priority`` (``Warning``...), ``rule``,
``time`` (RFC 3339, nanoseconds), ``output_fields`` ({"k8s.pod.name": ..., ...}), ``source``
(``syscall``, a plugin name, or ``internal`` for Falco's own events), ``tags`` and ``hostname``.
Missing or mistyped required fields raise ``BadEvent`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from corral.control.events import SOURCE_FALCO, SOURCE_INTERNAL, BadEvent, Event
from corral.model.control import is_namespace_name, is_object_name, parse_severity

INTERNAL_PREFIX = "Falco internal:"
_UNKNOWN = frozenset(("", "<NA>", "N/A"))


def parse_falco(obj: dict[str, Any], known_rules: Collection[str] = ()) -> Event:
    """One Falco alert as an Event; ``known_rules`` (when non-empty) limits accepted rules."""
    rule = obj.get("rule")
    if type(rule) is not str or not rule:
        rule = _str(obj, "rule")  # says what is wrong
    source = obj.get("source", "syscall")
    internal = source == "internal" or rule.startswith(INTERNAL_PREFIX)
    if known_rules and not internal and rule not in known_rules:
        raise BadEvent("unknown_rule", f"rule {rule!r} is not one of the loaded Falco rules")
    severity = parse_severity(_str(obj, "priority"))
    if severity is None:
        raise BadEvent("bad_field", f"priority: {obj['priority']!r} is not a Falco priority")
    fields = obj.get("output_fields") or {}
    if type(fields) is not dict:
        raise BadEvent("bad_field", "output_fields: expected a JSON object")
    get = fields.get
    tags = obj.get("tags") or ()
    if tags != () and (not isinstance(tags, list) or not all(type(t) is str for t in tags)):
        raise BadEvent("bad_field", "tags: expected a list of strings")
    output = obj.get("output", "")
    return Event(
        source=SOURCE_INTERNAL if internal else SOURCE_FALCO, time=_time(obj), rule=rule,
        severity=severity, output=output if type(output) is str else str(output),
        fields=fields, pod=_name(get("k8s.pod.name"), is_object_name),
        namespace=_name(get("k8s.ns.name"), is_namespace_name),
        hostname=_known(obj.get("hostname")), labels=_known(get("k8s.pod.labels")),
        tags=tuple(tags),
    )


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        raise BadEvent("missing_field", f"{key}: required field is missing")
    if not isinstance(value, str) or not value:
        raise BadEvent("bad_field", f"{key}: expected a non-empty string, got {value!r}")
    return value


def _known(value: Any) -> str | None:
    """A string field, with Falco's placeholders for "unknown" (``<NA>``, empty) as None."""
    if type(value) is str:
        return None if value in _UNKNOWN else value
    return None if value is None else str(value)


def _name(value: Any, valid: Callable[[object], bool]) -> str | None:
    """A pod or namespace name, or None unless it is a valid Kubernetes name: these reach API
    paths (quarantine labels the pod), so a forged ``../..`` never leaves this function. The raw
    value stays in the event's ``output_fields`` for whoever reads the incident."""
    name = _known(value)
    return name if name is not None and valid(name) else None


def _time(obj: dict[str, Any]) -> float:
    raw = _str(obj, "time")
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        raise BadEvent("bad_field", f"time: expected RFC 3339, got {raw!r}") from None
