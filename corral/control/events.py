"""The one event every processor step works on, and the error for input that is not one.

Ingest parsers (ingest/) build an ``Event`` from a Falco alert or a gateway access-log line; the
processors (processors/) fill in the agent and subject and hand it on. Plain data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

SOURCE_FALCO: Final = "falco"
SOURCE_GATEWAY: Final = "gateway"
SOURCE_INTERNAL: Final = "internal"
MAX_OUTPUT = 2048  # characters of an output line kept in samples and event-sink items
MAX_FIELDS = 64  # output fields kept, each string value cut at MAX_FIELD characters
MAX_FIELD = 1024


class BadEvent(ValueError):
    """Input that is not a valid event; ``reason`` is the metrics label, the message says what
    was expected and where."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Event:
    """One runtime observation, normalised across sources."""

    source: str  # falco | gateway | internal
    time: float  # when it happened (epoch seconds, from the record)
    rule: str  # Falco rule name, or "gateway denial"
    severity: str  # a corral.model.control severity
    output: str  # one human line
    pod: str | None = None
    namespace: str | None = None
    hostname: str | None = None
    labels: str | None = None  # Falco k8s.pod.labels as sent ("k1:v1,k2:v2")
    tags: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)  # output_fields / the access record
    agent: str | None = None  # filled by the enrich step (gateway lines carry it)
    subject: str = ""  # what incidents group on: pod, else agent, else host (enrich step)
    received: float = 0.0  # ingest clock time (windows are measured on it)
    duplicate: bool = False  # set by the dedup step
    incident: str | None = None  # set by the group step
    change: str | None = None  # opened | escalated, when this event changed its incident

    def summary(self) -> dict[str, Any]:
        """A compact JSON-able view kept as an incident sample and sent to event sinks."""
        return {
            "source": self.source, "time": self.time, "rule": self.rule,
            "severity": self.severity, "output": self.output, "agent": self.agent,
            "pod": self.pod, "namespace": self.namespace, "hostname": self.hostname,
            "tags": list(self.tags), "incident": self.incident, "fields": self.fields,
        }

    def sample(self) -> dict[str, Any]:
        """``summary()`` cut to bounded size: what is kept (incident samples) or queued (event
        sinks), so one oversized alert cannot grow memory or the disk queues."""
        item = self.summary()
        if len(self.output) > MAX_OUTPUT:
            item["output"] = self.output[:MAX_OUTPUT] + "…"
        fields = self.fields
        if len(fields) > MAX_FIELDS or any(type(v) is not str or len(v) > MAX_FIELD
                                           for v in fields.values()):
            item["fields"] = {str(k)[:MAX_FIELD]: _clip(v) for k, v in
                              list(fields.items())[:MAX_FIELDS]}
        return item


def _clip(value: Any) -> Any:
    if isinstance(value, str):
        return value[:MAX_FIELD]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)[:MAX_FIELD]  # nested values are kept as (cut) text
