"""Gateway access-log line (corral.model.records) -> ``Event``.

Every line is handed to the behaviour store (which counts it with ``records.counted``); only
refusals (``deny``, and ``would_deny`` in learn mode) take part in incidents, once per request:
a tunnel's progress and close lines repeat the decision of its open line and raise nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from corral.control.events import SOURCE_GATEWAY, BadEvent, Event
from corral.model import records as R

GATEWAY_RULE: Final = "gateway denial"
LEARN_RULE: Final = "gateway would-deny (learn mode)"
_REQUIRED: Final = (R.TIME, R.AGENT, R.HOST, R.DECISION, R.REASON)
_DECISIONS: Final = ("allow", "deny", "would_deny")


def check_access(obj: dict[str, Any]) -> None:
    """Raise BadEvent unless ``obj`` has the fields the control plane relies on."""
    for key in _REQUIRED:
        value = obj.get(key)
        if value is None:
            raise BadEvent("missing_field", f"{key}: required field of an access record is missing")
        if not isinstance(value, str):
            raise BadEvent("bad_field", f"{key}: expected a string, got {value!r}")
    if obj[R.DECISION] not in _DECISIONS:
        raise BadEvent("bad_field",
                       f"decision: expected one of {_DECISIONS}, got {obj[R.DECISION]!r}")
    try:
        R.requests_of(obj)
    except ValueError as exc:
        raise BadEvent("bad_field", str(exc)) from None


def parse_access(obj: dict[str, Any], severity: str) -> Event | None:
    """A refusal as an Event (``severity`` from the policy); None for an allowed request and
    for a line that counts no request (a tunnel's progress or close)."""
    check_access(obj)
    decision = obj[R.DECISION]
    if decision == "allow" or not R.requests_of(obj):
        return None
    try:
        when = datetime.fromisoformat(obj[R.TIME]).timestamp()
    except ValueError:
        raise BadEvent("bad_field", f"time: expected RFC 3339, got {obj[R.TIME]!r}") from None
    learn = decision == "would_deny"
    dest = f"{obj[R.HOST]}:{obj.get(R.PORT, '')}".rstrip(":")
    return Event(
        source=SOURCE_GATEWAY, time=when, rule=LEARN_RULE if learn else GATEWAY_RULE,
        severity="notice" if learn else severity, agent=obj[R.AGENT], fields=obj,
        output=f"gateway {decision} agent={obj[R.AGENT]} dest={dest} reason={obj[R.REASON]}",
        tags=("gateway", obj[R.REASON]),
    )
