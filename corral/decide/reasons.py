"""The closed vocabulary of decision reasons: every log line's ``reason`` is one of these."""

from __future__ import annotations

from typing import Final

ALLOWED_BY_RULE: Final = "allowed_by_rule"
ALLOWED_CIDR: Final = "allowed_cidr"
DENIED_BY_RULE: Final = "denied_by_rule"
NOT_IN_ALLOWLIST: Final = "not_in_allowlist"
PORT_NOT_ALLOWED: Final = "port_not_allowed"
IP_LITERAL: Final = "ip_literal"
INVALID_HOST: Final = "invalid_host"
FORBIDDEN_ADDRESS: Final = "forbidden_address"
QUARANTINED: Final = "quarantined"
RATE_LIMITED: Final = "rate_limited"
QUOTA_EXCEEDED: Final = "quota_exceeded"
TUNNEL_LIMIT: Final = "tunnel_limit"
CONNECTION_LIMIT: Final = "connection_limit"
SNI_MISSING: Final = "sni_missing"
SNI_MISMATCH: Final = "sni_mismatch"
HOST_MISMATCH: Final = "host_mismatch"
BAD_REQUEST: Final = "bad_request"
RESOLVE_FAILED: Final = "resolve_failed"
UPSTREAM_FAILED: Final = "upstream_failed"

# What the agent (or the LLM driving it) should do next, per reason.
NEXT_STEP: Final[dict[str, str]] = {
    DENIED_BY_RULE: "this destination is explicitly denied; do not retry, use another source",
    NOT_IN_ALLOWLIST: "ask the platform team to add it to the agent's egress.allow in corral.yaml",
    PORT_NOT_ALLOWED: "use the port the allowlist names, or ask for this port to be added",
    IP_LITERAL: "use the service's DNS name; an IP address needs an egress.allow entry naming "
                "it with its port (10.96.0.1:443)",
    INVALID_HOST: "use a valid DNS name",
    FORBIDDEN_ADDRESS: "internal and reserved addresses are refused: a name may resolve into a "
                       "range only if egress.resolve_into lists it; an address only if an "
                       "egress.allow entry names it with its port",
    QUARANTINED: "this agent is quarantined after a security incident; contact the platform team",
    RATE_LIMITED: "slow down and retry after the period in Retry-After",
    QUOTA_EXCEEDED: "the hourly outbound byte quota is spent; retry in the next hour",
    TUNNEL_LIMIT: "too many open tunnels; close idle connections and retry",
    CONNECTION_LIMIT: "too many open connections to the gateway; reuse or close some and retry",
    SNI_MISSING: "send TLS with SNI matching the CONNECT host",
    SNI_MISMATCH: "the TLS server name must equal the CONNECT host (no domain fronting)",
    HOST_MISMATCH: "the Host header must equal the host of the absolute URI",
    BAD_REQUEST: "send a valid HTTP/1.1 proxy request (absolute URI or CONNECT host:port)",
    RESOLVE_FAILED: "not a denial: the gateway's own DNS lookup of this name failed (how is "
                    "said before); if the name is spelled right, retry later or tell the "
                    "platform team that the gateway's resolver fails",
    UPSTREAM_FAILED: "the destination did not accept the connection; retry later",
}
