"""The policy schema: ``corral.yaml`` as typed, frozen, normalised values.

Every layer reads the policy through these classes. Domain patterns, registry prefixes, CIDRs and
byte quantities are parsed on load, so downstream code never sees raw strings it would have to
re-validate. Unknown fields are errors (a typo must not silently drop a control).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from corral.model.admission import Admission
from corral.model.control import Access, Response
from corral.model.domains import (
    AddressPattern,
    DomainPattern,
    is_address_entry,
    parse_address_pattern,
    parse_pattern,
)
from corral.model.images import RegistryPrefix, parse_image, parse_registry_prefix
from corral.model.ingress import Ingress
from corral.model.policy_base import Strict
from corral.model.quantity import format_bytes, parse_bytes
from corral.model.runtime import Runtime

API_VERSION = "corral.dev/v1alpha1"
QUARANTINE_LABEL = "corral.dev/quarantine"
AGENT_LABEL = "corral.dev/agent"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_PROCESS = re.compile(r"^[A-Za-z0-9_.+-]{1,15}$")


def _dns_label(value: object) -> str:
    if not isinstance(value, str) or not _DNS1123_LABEL.match(value):
        raise ValueError(
            "expected a DNS-1123 label (lower-case letters, digits, '-', at most 63 "
            f"characters), got {value!r}"
        )
    return value


def _label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if (prefix and not _PREFIX.match(prefix)) or not _LABEL_NAME.match(name):
        raise ValueError(f"{key!r} is not a Kubernetes label key")
    return key


def _unquoted(key: object, value: object) -> str:
    """YAML 1.2 reads unquoted 08, 1e3, true or null as a number, boolean or null, never as the
    text the user typed; guessing the text back is unreliable (08 and 8 both read as 8)."""
    kind = "null" if value is None else "a boolean" if isinstance(value, bool) else "a number"
    return (f"label {key!s}: the unquoted value was read as {kind} ({value!r}), not as text; "
            f"label values are strings: quote it as you mean it, e.g. {key!s}: \"...\"")


def _labels(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise ValueError("expected a non-empty map of Kubernetes labels (matchLabels)")
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, bool | int | float) or v is None:
            raise ValueError(_unquoted(k, v))
        if not isinstance(v, str) or not _LABEL_VALUE.match(v):
            raise ValueError(f"label {k!r}: {v!r} is not a Kubernetes label value")
        out[_label_key(str(k))] = v
    return dict(sorted(out.items()))


def _pattern(value: object, *, for_deny: bool = False) -> DomainPattern:
    if isinstance(value, DomainPattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a domain pattern string, got {type(value).__name__}")
    return parse_pattern(value, for_deny=for_deny)


def _allow_entry(value: object) -> DomainPattern | AddressPattern:
    if isinstance(value, AddressPattern):
        return value
    if isinstance(value, str) and is_address_entry(value):
        return parse_address_pattern(value)
    return _pattern(value)


def _deny_pattern(value: object) -> DomainPattern:
    return _pattern(value, for_deny=True)


def _prefix(value: object) -> RegistryPrefix:
    if isinstance(value, RegistryPrefix):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a registry prefix like registry.example.com/agents/")
    return parse_registry_prefix(value)


def _image(value: object) -> str:
    """An image reference, kept as written (a tag, or a digest to pin exactly what runs)."""
    if not isinstance(value, str):
        raise ValueError("expected an image reference like registry.example.com/corral:0.1.0 "
                         "or registry.example.com/corral@sha256:<64 hex digits>")
    parse_image(value)
    return value


def _cidr(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        raise ValueError(f"expected a CIDR such as 10.20.0.0/16 ({exc})") from None


def _process(value: object) -> str:
    if not isinstance(value, str) or not _PROCESS.match(value):
        raise ValueError(
            "expected a process name as Falco's proc.name sees it (at most 15 characters, "
            f"no path), got {value!r}"
        )
    return value


Name = Annotated[str, BeforeValidator(_dns_label)]
Labels = Annotated[dict[str, str], BeforeValidator(_labels)]
ImageName = Annotated[str, BeforeValidator(_image)]
_PATTERN_SCHEMA = WithJsonSchema({
    "type": "string", "examples": ["api.openai.com", "*.weather.gov", "git.corp.example:8443"],
    "description": "exact name or *.name (any depth below, never the apex), optional :port",
})
Pattern = Annotated[DomainPattern, BeforeValidator(_pattern), PlainSerializer(str),
                    _PATTERN_SCHEMA]
AllowEntry = Annotated[
    DomainPattern | AddressPattern, BeforeValidator(_allow_entry), PlainSerializer(str),
    WithJsonSchema({
        "type": "string",
        "examples": ["api.openai.com", "*.weather.gov", "git.corp.example:8443",
                     "10.96.0.1:443", "10.20.0.0/16:5432"],
        "description": "exact name or *.name (any depth below, never the apex), optional "
                       ":port; or an address/CIDR with its required :port",
    }),
]
DenyPattern = Annotated[DomainPattern, BeforeValidator(_deny_pattern), PlainSerializer(str),
                        _PATTERN_SCHEMA]
Prefix = Annotated[RegistryPrefix, BeforeValidator(_prefix), PlainSerializer(str),
                   WithJsonSchema({"type": "string", "examples": ["registry.example.com/agents/"]})]
Bytes = Annotated[int, BeforeValidator(parse_bytes), PlainSerializer(format_bytes),
                  WithJsonSchema({"type": ["string", "integer"], "examples": ["50Mi", "1G"]})]
Cidr = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_cidr), PlainSerializer(str),
    WithJsonSchema({"type": "string", "examples": ["10.96.0.0/12"]}),
]
Process = Annotated[str, BeforeValidator(_process)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Rate(Strict):
    requests_per_minute: int = Field(gt=0)


class Quota(Strict):
    bytes_out_per_hour: Bytes = Field(gt=0)


class Egress(Strict):
    """What one agent may reach through the gateway."""

    mode: Literal["enforce", "learn"] = "enforce"
    allow: tuple[AllowEntry, ...] = ()
    deny: tuple[DenyPattern, ...] = ()
    # Allowed *names* may resolve into these otherwise refused ranges. Never a grant to dial
    # an IP literal: that takes an allow entry naming the address or CIDR with its port.
    resolve_into: tuple[Cidr, ...] = ()
    allow_cidrs: tuple[Cidr, ...] = ()  # the old name of resolve_into: lint says how to move
    sni_check: bool = True
    rate: Rate | None = None
    quota: Quota | None = None
    max_tunnels: int = Field(default=1024, gt=0)

    @property
    def names(self) -> tuple[DomainPattern, ...]:
        """The allow entries that are DNS name patterns."""
        return tuple(p for p in self.allow if isinstance(p, DomainPattern))

    @property
    def addresses(self) -> tuple[AddressPattern, ...]:
        """The allow entries that name an address or CIDR with its port."""
        return tuple(p for p in self.allow if isinstance(p, AddressPattern))

    @property
    def private_ranges(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Where allowed names may resolve although the SSRF guard would refuse it."""
        return self.resolve_into + self.allow_cidrs


class Agent(Strict):
    """One agent profile: which pods, which listener port (its identity), what it may do."""

    name: Name
    selector: Labels
    port: Port | None = None
    egress: Egress = Egress()
    processes: tuple[Process, ...] = ()
    ingress: Ingress | None = None  # Gateway API route, rate limit, auth (corral.model.ingress)


class ResourceList(Strict):
    cpu: str
    memory: str


class Resources(Strict):
    requests: ResourceList = ResourceList(cpu="250m", memory="128Mi")
    limits: ResourceList = ResourceList(cpu="1", memory="512Mi")


class GatewayLimits(Strict):
    """Protocol limits of every listener; defaults follow what Envoy and Squid ship."""

    header_bytes: int = Field(default=16384, ge=1024)
    headers: int = Field(default=100, ge=8)
    idle_timeout_s: float = Field(default=300.0, gt=0)
    header_timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # open client connections: per agent, and in all per process (each agent keeps
    # ``AGENT_RESERVE`` more beyond the total, so one agent can never lock the others out)
    agent_connections: int = Field(default=12000, ge=1)
    connections: int = Field(default=24000, ge=1)


class Gateway(Strict):
    namespace: Name = "egress-gateway"
    replicas: int = Field(default=2, ge=1)
    image: ImageName = "ghcr.io/corral-dev/corral:0.1.0"  # tag or @sha256: digest
    base_port: Port = 8080
    admin_port: Port = 9090
    resources: Resources = Resources()
    limits: GatewayLimits = GatewayLimits()
    # an open tunnel writes a progress line (bytes since its previous line) this often
    log_progress_s: float = Field(default=60.0, ge=1.0)


class Dns(Strict):
    """Where cluster DNS runs; the default-deny policy must still let pods resolve names."""

    namespace: Name = "kube-system"
    selector: Labels = Field(default_factory=lambda: {"k8s-app": "kube-dns"})


class Network(Strict):
    cilium: bool = False


class Spec(Strict):
    namespace: Name
    registries: tuple[Prefix, ...] = ()
    gateway: Gateway = Gateway()
    dns: Dns = Dns()
    network: Network = Network()
    admission: Admission = Admission()
    agents: tuple[Agent, ...] = Field(min_length=1)
    response: Response = Response()  # control plane: incidents, sinks, quarantine
    control: Access = Access()  # control plane: who may reach it, credentials (Secret names)
    runtime: Runtime = Runtime()  # Falco rules per agent (corral.model.runtime)

    @model_validator(mode="after")
    def _identities_unique(self) -> Spec:
        seen_names: set[str] = set()
        seen_ports: dict[int, str] = {}
        for agent, port in self._agent_ports():
            if agent.name in seen_names:
                raise ValueError(f"agent name {agent.name!r} is used twice; names must be unique")
            seen_names.add(agent.name)
            if port in seen_ports or port == self.gateway.admin_port:
                other = seen_ports.get(port, "the gateway admin port")
                raise ValueError(
                    f"agent {agent.name!r} would listen on port {port}, already used by "
                    f"{other}; the port is the agent's identity and must be unique"
                )
            seen_ports[port] = agent.name
        return self

    def _agent_ports(self) -> list[tuple[Agent, int]]:
        """Each agent with its listener port (explicit ``port`` or base_port + index)."""
        return [(a, a.port if a.port is not None else self.gateway.base_port + i)
                for i, a in enumerate(self.agents)]

    def listener_ports(self) -> dict[str, int]:
        """Agent name -> gateway listener port (names are unique once validated)."""
        return {a.name: port for a, port in self._agent_ports()}

    def agent(self, name: str) -> Agent:
        for a in self.agents:
            if a.name == name:
                return a
        raise KeyError(name)


class Metadata(Strict):
    name: Name
    labels: Labels | None = None


class Policy(Strict):
    """The whole ``corral.yaml`` document."""

    api_version: Literal["corral.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Policy"]
    metadata: Metadata
    spec: Spec

    def dump(self) -> dict[str, Any]:
        """Normalised plain data (patterns as strings), e.g. for the gateway's ConfigMap."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
