"""Control-plane schemas: the ``spec.response`` policy section, severities, incident records.

Where it sits: the policy loader validates ``spec.response`` with these classes; ``corral serve``
(corral.control) reads them to group events into incidents, route incidents to sinks and decide
when to quarantine an agent. The incident and action record field names are defined here once,
so the store, the JSON API and the sinks all speak the same words. Pure: no I/O.
"""

from __future__ import annotations

import re
import typing
from typing import Final, Literal, cast

from pydantic import Field, model_validator

from corral.model.policy_base import Strict

# Falco's priority scale, lowest first; incidents use the same words for their severity.
SEVERITIES: Final = (
    "debug", "informational", "notice", "warning", "error", "critical", "alert", "emergency",
)
Severity = Literal[
    "debug", "informational", "notice", "warning", "error", "critical", "alert", "emergency",
]
_ALIASES: Final = {"info": "informational", "warn": "warning", "err": "error", "crit": "critical",
                   "emerg": "emergency"}




def _spellings() -> dict[str, str]:
    """Every spelling met on the hot path -> the normalised name ("Warning", "INFO", "warn")."""
    base = {s: s for s in SEVERITIES} | _ALIASES
    return {spelling: v for k, v in base.items() for spelling in (k, k.capitalize(), k.upper())}


_NAMES: Final = _spellings()
_RANK: Final = {name: SEVERITIES.index(sev) for name, sev in _NAMES.items()}


def severity_rank(name: str) -> int:
    """Position of a severity (or Falco priority, any case, short aliases too) on the scale."""
    rank = _RANK.get(name)
    if rank is None:
        rank = _RANK[_NAMES[name.strip().lower()]]
    return rank


def parse_severity(name: str) -> Severity | None:
    """Normalised severity for a Falco priority string, or None when it is not one."""
    sev = _NAMES.get(name)
    return cast("Severity | None", sev if sev is not None else _NAMES.get(name.strip().lower()))


def raise_severity(sev: str, steps: int = 1) -> Severity:
    """``steps`` levels higher on the scale, capped at emergency."""
    return SEVERITIES[min(severity_rank(sev) + steps, len(SEVERITIES) - 1)]


# Kubernetes object names (apimachinery's validation): a namespace is a DNS-1123 label, a pod
# name a DNS-1123 subdomain. Anything taken from an event passes one of these before it becomes
# part of an API path, so "..", "/", "%2F" or upper case never reach the path.
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_K8S_LABEL: Final = re.compile(rf"{_LABEL}")
_K8S_SUBDOMAIN: Final = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def is_namespace_name(value: object) -> bool:
    """True for a valid Kubernetes namespace name (DNS-1123 label, at most 63 characters)."""
    return isinstance(value, str) and _K8S_LABEL.fullmatch(value) is not None


def is_object_name(value: object) -> bool:
    """True for a valid Kubernetes object name such as a pod's (DNS-1123 subdomain, <= 253)."""
    return (isinstance(value, str) and len(value) <= 253
            and _K8S_SUBDOMAIN.fullmatch(value) is not None)


SinkType = Literal["webhook", "slack", "splunk", "elasticsearch", "syslog", "loki", "alertmanager"]
SINK_TYPES: Final = typing.get_args(SinkType)


class Route(Strict):
    """Which incidents a sink receives: at least ``min_severity``; when ``tags`` is set, only
    incidents carrying at least one of them (Falco rule tags, plus ``gateway``, ``falco``,
    ``correlated``)."""

    min_severity: Severity = "warning"
    tags: tuple[str, ...] = ()


class Sink(Strict):
    """One destination for incidents (or, with ``send: events``, for every enriched event)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    type: SinkType
    url: str | None = None  # HTTP sinks: the endpoint base (e.g. https://splunk:8088)
    host: str | None = None  # syslog
    port: int | None = Field(default=None, ge=1, le=65535)  # syslog
    transport: Literal["udp", "tcp"] = "udp"  # syslog
    token_env: str | None = None  # name of the environment variable holding a secret token
    token_file: str | None = None  # or a file holding it (a mounted Secret)
    index: str | None = None  # Splunk index / Elasticsearch index
    send: Literal["incidents", "events"] = "incidents"
    route: Route = Route()
    timeout_s: float = Field(default=5.0, gt=0)
    batch: int = Field(default=200, ge=1, le=10000)
    max_queue: int = Field(default=1_000_000, ge=100)  # items kept on disk during an outage
    backoff_s: float = Field(default=0.5, gt=0)  # first retry delay; doubles up to backoff_max_s
    backoff_max_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _target(self) -> Sink:
        if self.type == "syslog":
            if not self.host or not self.port:
                raise ValueError("a syslog sink needs host and port")
        elif not self.url or not self.url.startswith(("http://", "https://")):
            raise ValueError(f"a {self.type} sink needs url: http(s)://host[:port][/path]")
        return self


class Quarantine(Strict):
    """When an incident makes corral cut an agent off (gateway deny-all + pod label)."""

    enabled: bool = True
    min_severity: Severity = "critical"
    min_events: int = Field(default=1, ge=1)  # and at least this many events in the incident
    correlated_only: bool = False  # only incidents that join a Falco alert and a gateway denial
    agents: tuple[str, ...] = ()  # limit automatic quarantine to these agents (empty: all)


class Incidents(Strict):
    """How events are grouped into incidents."""

    window_s: float = Field(default=300.0, gt=0)  # same subject + rule within this -> one incident
    correlate_s: float = Field(default=60.0, gt=0)  # Falco alert + gateway denial within this
    dedup_s: float = Field(default=5.0, ge=0)  # identical events within this only count
    gateway_severity: Severity = "warning"  # severity of a gateway denial on its own
    # Bounds (a flood of distinct subjects or rules must not grow memory): beyond max_open the
    # least recently updated incident is closed; an incident open longer than max_age_s closes
    # (the next event opens a new one).
    max_open: int = Field(default=10_000, ge=10)
    max_age_s: float = Field(default=86_400.0, gt=0)


class Response(Strict):
    """``spec.response``: incidents, sinks and the quarantine threshold."""

    incidents: Incidents = Incidents()
    quarantine: Quarantine = Quarantine()
    sinks: tuple[Sink, ...] = ()

    @model_validator(mode="after")
    def _unique_sinks(self) -> Response:
        names = [s.name for s in self.sinks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"sink names must be unique; repeated: {', '.join(sorted(dup))}")
        return self


_NS_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_SECRET_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
Namespace = typing.Annotated[str, Field(pattern=_NS_PATTERN)]
SecretName = typing.Annotated[str, Field(pattern=_SECRET_PATTERN)]


class Peer(Strict):
    """Pods allowed to reach the control plane: a namespace and a pod selector in it."""

    namespace: Namespace
    selector: dict[str, str] = Field(default_factory=dict)  # empty: every pod of the namespace


class Access(Strict):
    """``spec.control``: who may reach ``corral serve`` in the cluster, and the Secrets holding
    its credentials (referenced by name; corral never renders secret material).

    Ingest: Falco (``falco``) with a client certificate (http_output ``mtls``), and the gateway
    log shipper (``log_shipper``) with the ingest token. Admin (quarantine, release, reads):
    pods of ``admin_namespaces`` with the admin token. The NetworkPolicy admits exactly these.
    """

    falco: Peer = Peer(namespace="falco", selector={"app.kubernetes.io/name": "falco"})
    log_shipper: Peer | None = Peer(namespace="logging",
                                    selector={"app.kubernetes.io/name": "fluent-bit"})
    admin_namespaces: tuple[Namespace, ...] = ()
    tls_secret: SecretName = "corral-control-tls"  # tls.crt, tls.key, ca.crt (Falco's client CA)
    tokens_secret: SecretName = "corral-control-tokens"  # ingest.token, admin.token
    falco_client_secret: SecretName = "corral-falco-client"  # in Falco's namespace: tls.crt,
    # tls.key (its client certificate) and ca.crt (the CA of the control plane's certificate)


# Field names of an incident record (store rows, JSON API, sink payloads).
INCIDENT_FIELDS: Final = (
    "id", "agent", "pod", "namespace", "rule", "severity", "sources", "tags", "count",
    "first_seen", "last_seen", "status", "summary", "correlated", "quarantined",
)
# Notification kinds a sink receives for one incident.
NOTICE_OPENED: Final = "opened"
NOTICE_ESCALATED: Final = "escalated"
NOTICE_CLOSED: Final = "closed"
