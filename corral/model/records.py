"""Record schemas shared by the gateway (writer), the control plane and the review loop (readers).

The access log is one JSON object per plain request (``event`` request, written when it ends) and
a few per tunnel: ``open`` when bytes start to flow (the decision), ``progress`` every
``spec.gateway.log_progress_s`` while it stays open, ``close`` when it ends. Tunnel lines share
a ``flow`` id; their ``bytes_up``/``bytes_down`` are the bytes since the flow's previous line, so
summing every line counts each byte once, and ``counted`` counts each request once (on its
request or open line). Field names are the constants below and nothing else; tests and readers
use these names, never literals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final, Literal, NotRequired, TypedDict

TIME: Final = "time"
AGENT: Final = "agent"
CLIENT: Final = "client"
METHOD: Final = "method"
HOST: Final = "host"
PORT: Final = "port"
PATH: Final = "path"
DECISION: Final = "decision"
REASON: Final = "reason"
RULE: Final = "rule"
RESOLVED: Final = "resolved"
BYTES_UP: Final = "bytes_up"
BYTES_DOWN: Final = "bytes_down"
DURATION_MS: Final = "duration_ms"
STATUS: Final = "status"
SNI: Final = "sni"
POLICY_VERSION: Final = "policy_version"
KIND: Final = "kind"
EVENT: Final = "event"
FLOW: Final = "flow"
BYTES_UP_TOTAL: Final = "bytes_up_total"  # tunnel lines: the flow's bytes so far
BYTES_DOWN_TOTAL: Final = "bytes_down_total"

EVENT_REQUEST: Final = "request"  # a whole flow in one line: a plain request, or any refusal
EVENT_OPEN: Final = "open"  # a tunnel (CONNECT, WebSocket) carries bytes: its decision
EVENT_PROGRESS: Final = "progress"  # a tunnel still open: bytes since its previous line
EVENT_CLOSE: Final = "close"  # a tunnel ended: its last bytes, final reason and duration
EVENTS: Final = (EVENT_REQUEST, EVENT_OPEN, EVENT_PROGRESS, EVENT_CLOSE)
_REQUESTS: Final[dict[object, int]] = {
    EVENT_REQUEST: 1, EVENT_OPEN: 1, EVENT_PROGRESS: 0, EVENT_CLOSE: 0}


def policy_version(document: bytes) -> str:
    """The ``policy_version`` of a policy file's bytes: what the gateway logs, and what the
    rendered ConfigMap announces for the same document."""
    return hashlib.sha256(document).hexdigest()[:12]


ACCESS_FIELDS: Final = (
    TIME, KIND, EVENT, FLOW, AGENT, CLIENT, METHOD, HOST, PORT, PATH, DECISION, REASON, RULE,
    RESOLVED, SNI, BYTES_UP, BYTES_DOWN, DURATION_MS, STATUS, POLICY_VERSION,
)
TUNNEL_FIELDS: Final = (BYTES_UP_TOTAL, BYTES_DOWN_TOTAL)  # also on open/progress/close lines


def requests_of(record: Mapping[str, Any]) -> int:
    """How many requests one access line counts: 1 for a request or open line, 0 for a
    tunnel's progress and close lines (their request was counted when it opened). A line
    without ``event`` (gateways before it existed) is a whole flow. ValueError when unknown."""
    try:
        return _REQUESTS[record.get(EVENT, EVENT_REQUEST)]
    except (KeyError, TypeError):
        raise _unknown_event(record) from None


def counted(record: Mapping[str, Any]) -> tuple[int, Any, Any]:
    """What one access line adds to counts: (requests, bytes_up, bytes_down). Bytes are taken
    from every line (tunnel lines carry deltas), requests only from request and open lines
    (``requests_of``), so a reader that sums ``counted`` over a log counts nothing twice.
    Values are as found (the reader checks they are byte counts); KeyError when a byte field
    is missing. The store calls it per line: the lookup is inlined, not a second call."""
    try:
        requests = _REQUESTS[record.get(EVENT, EVENT_REQUEST)]
    except (KeyError, TypeError):
        raise _unknown_event(record) from None
    return requests, record[BYTES_UP], record[BYTES_DOWN]


def _unknown_event(record: Mapping[str, Any]) -> ValueError:
    return ValueError(f"field {EVENT!r}: expected one of {', '.join(EVENTS)}, "
                      f"got {record.get(EVENT)!r}")

Outcome = Literal["allow", "deny", "would_deny"]
KIND_ACCESS: Final = "access"


class AccessRecord(TypedDict):
    """One canonical line of the gateway's access log."""

    time: str  # RFC 3339, UTC, ms: flow start (request, open), else when written
    kind: str  # always "access"
    event: str  # one of EVENTS
    flow: str  # the same on every line of one flow (process prefix + counter)
    agent: str
    client: str  # source ip:port, for attribution
    method: str  # CONNECT, GET, ...
    host: str  # normalised host as requested
    port: int
    path: str | None  # plain HTTP only
    decision: Outcome
    reason: str  # one of corral.decide.reasons
    rule: str | None  # the policy entry or built-in rule that decided
    resolved: str | None  # the vetted address dialled
    sni: str | None  # TLS SNI seen inside a CONNECT tunnel
    bytes_up: int  # since the flow's previous line (a whole request: all of it)
    bytes_down: int  # every byte written to the agent: relayed, refusal, 200/101 heads
    bytes_up_total: NotRequired[int]  # tunnel lines only
    bytes_down_total: NotRequired[int]
    duration_ms: float
    status: int  # HTTP status returned to the agent (200 for an established tunnel)
    policy_version: str
