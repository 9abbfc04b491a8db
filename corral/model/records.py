"""Record schemas shared by the gateway (writer), the control plane and the review loop (readers).

The access log is one JSON object per request or tunnel, emitted once when it ends. Field names
are the constants below and nothing else; tests and readers use these names, never literals.
"""

from __future__ import annotations

import hashlib
from typing import Final, Literal, TypedDict

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



def policy_version(document: bytes) -> str:
    """The ``policy_version`` of a policy file's bytes: what the gateway logs, and what the
    rendered ConfigMap announces for the same document."""
    return hashlib.sha256(document).hexdigest()[:12]


ACCESS_FIELDS: Final = (
    TIME, KIND, AGENT, CLIENT, METHOD, HOST, PORT, PATH, DECISION, REASON, RULE, RESOLVED,
    SNI, BYTES_UP, BYTES_DOWN, DURATION_MS, STATUS, POLICY_VERSION,
)

Outcome = Literal["allow", "deny", "would_deny"]
KIND_ACCESS: Final = "access"


class AccessRecord(TypedDict):
    """One canonical line of the gateway's access log."""

    time: str  # RFC 3339, UTC, millisecond precision
    kind: str  # always "access"
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
    bytes_up: int
    bytes_down: int
    duration_ms: float
    status: int  # HTTP status returned to the agent (200 for an established tunnel)
    policy_version: str
