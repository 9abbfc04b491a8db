"""The ``spec.runtime`` policy section: what corral's Falco rules look for, and where alerts go.

Where it sits: the policy loader validates ``spec.runtime`` with these classes;
``corral.compile.falco`` turns them (with each agent's selector and ``processes`` allowlist)
into ``falco/corral_rules.yaml`` and the Falco Helm values. Pure: no I/O.

Every list here ends up inside a Falco condition, so values are checked against the character
set Falco's list expansion handles without quoting (no spaces, quotes, parentheses or commas):
a value that would change the meaning of a condition is refused at load time, not in Falco.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Final, Literal

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

from corral.model.policy_base import Strict

RuleKind = Literal[
    "unexpected_process",
    "shell",
    "package_tool",
    "drop_and_execute",
    "kube_api",
    "sa_token",
    "cloud_metadata",
    "gateway_bypass",
    "crypto_miner",
]
RULE_KINDS: Final[tuple[RuleKind, ...]] = (
    "unexpected_process", "shell", "package_tool", "drop_and_execute", "kube_api", "sa_token",
    "cloud_metadata", "gateway_bypass", "crypto_miner",
)

DEFAULT_CONTROL_URL: Final = "https://corral-control.corral-system.svc:8765/v1/falco"

# Fields an exception may compare on. A closed set: each exists in Falco's supported fields,
# and each is a property of the event an operator can reason about when tuning a rule.
EXCEPTION_FIELDS: Final = frozenset({
    "proc.name", "proc.pname", "proc.exepath", "proc.cmdline", "proc.pcmdline",
    "container.image.repository", "k8s.pod.name", "fd.name", "fd.directory",
    "fd.sip", "fd.snet", "fd.sport", "fd.sip.name", "user.name",
})

_VALUE = re.compile(r"^[A-Za-z0-9_.:/+@\[\]*-]{1,253}$")
_EXC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
_PATH = re.compile(r"^/[A-Za-z0-9_./-]{0,254}$")


def _ip(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise ValueError(f"expected an IP address such as 169.254.169.254, got {value!r}") from None


def _v4_cidr(value: object) -> ipaddress.IPv4Network:
    # Falco's fd.snet takes IPv4 networks everywhere; IPv6 networks are not accepted by every
    # engine version we verify against (Debian's sysdig refuses them), so they are refused here.
    if isinstance(value, ipaddress.IPv4Network):
        return value
    try:
        net = ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        raise ValueError(f"expected an IPv4 CIDR such as 10.96.0.0/12 ({exc})") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValueError(f"{value!r}: only IPv4 CIDRs are supported in Falco network matches")
    return net


def _domain(value: object) -> str:
    if not isinstance(value, str) or not _DOMAIN.match(value.lower().rstrip(".")):
        raise ValueError(f"expected a host name such as pool.example.com, got {value!r}")
    return value.lower().rstrip(".")


def _path(value: object) -> str:
    if not isinstance(value, str) or not _PATH.match(value):
        raise ValueError(f"expected an absolute path without spaces or quotes, got {value!r}")
    return value


def _value(value: object) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _VALUE.match(text):
        raise ValueError(
            "expected a value without spaces, quotes, parentheses or commas "
            f"(Falco splices it into a condition), got {value!r}"
        )
    return text


IPAddr = Annotated[
    ipaddress.IPv4Address | ipaddress.IPv6Address, BeforeValidator(_ip), PlainSerializer(str)
]
V4Cidr = Annotated[ipaddress.IPv4Network, BeforeValidator(_v4_cidr), PlainSerializer(str)]
Domain = Annotated[str, BeforeValidator(_domain)]
AbsPath = Annotated[str, BeforeValidator(_path)]
Value = Annotated[str, BeforeValidator(_value)]
Port = Annotated[int, Field(ge=1, le=65535)]


class RuntimeException(Strict):
    """A tuning entry: events matching every ``when`` field are not alerts for that rule kind.

    ``when`` maps a Falco field to a value (compared with ``=``) or a list (compared with
    ``in``). Entries with the same rule kind and the same fields become one Falco
    ``exceptions`` item, so ``corral review`` can keep appending value tuples.
    """

    name: Annotated[str, Field(pattern=_EXC_NAME.pattern)]
    rule: RuleKind
    agents: tuple[str, ...] = ()  # empty: every agent
    when: dict[str, Value | tuple[Value, ...]] = Field(min_length=1)

    @field_validator("when")
    @classmethod
    def _known_fields(
        cls, when: dict[str, str | tuple[str, ...]]
    ) -> dict[str, str | tuple[str, ...]]:
        for name, value in when.items():
            if name not in EXCEPTION_FIELDS:
                raise ValueError(
                    f"{name!r} is not a field exceptions may use; one of: "
                    + ", ".join(sorted(EXCEPTION_FIELDS))
                )
            if isinstance(value, tuple) and not value:
                raise ValueError(f"{name}: an empty list would never match; remove the entry")
        return dict(sorted(when.items()))


_METADATA: Final = (
    "169.254.169.254",  # AWS/GCP/Azure/OCI/DigitalOcean/OpenStack instance metadata
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "169.254.170.2",  # AWS ECS task metadata and credentials
    "169.254.170.23",  # AWS EKS Pod Identity agent
    "fd00:ec2::23",  # EKS Pod Identity agent over IPv6
    "168.63.129.16",  # Azure WireServer
    "100.100.100.200",  # Alibaba Cloud metadata
)
_SERVICE_CIDR: Final = ipaddress.IPv4Network("10.96.0.0/12")  # kubeadm's default service CIDR
_MINER_PORTS: Final = (
    3333, 3334, 3335, 3336, 3357, 4444, 5555, 5556, 5588, 5730, 6099, 6666, 7777, 7778,
    9999, 14433, 14444, 45560, 45700,
)
_MINER_DOMAINS: Final = (
    "pool.minexmr.com", "xmr.pool.minergate.com", "pool.supportxmr.com", "xmr.nanopool.org",
    "xmrpool.eu", "mine.moneropool.com", "gulf.moneroocean.stream", "pool.hashvault.pro",
    "xmr.2miners.com", "monerohash.com",
)


class Runtime(Strict):
    """What corral's Falco rules watch for in every agent's pods, and where Falco sends alerts."""

    model_config = ConfigDict(**Strict.model_config, validate_default=True)

    enabled: bool = True
    control_url: str = DEFAULT_CONTROL_URL  # Falco http_output target: `corral serve`
    disable: tuple[RuleKind, ...] = ()  # rule kinds not rendered (for every agent)
    # Where agents may connect directly: the gateway Service (agent's listener port only),
    # cluster DNS (port 53), and anything listed in direct_cidrs. Defaults: kubeadm's
    # service CIDR; set them to your cluster's service CIDR or the exact ClusterIPs.
    gateway_cidrs: tuple[V4Cidr, ...] = Field(default=(_SERVICE_CIDR,), min_length=1)
    dns_cidrs: tuple[V4Cidr, ...] = Field(default=(_SERVICE_CIDR,), min_length=1)
    direct_cidrs: tuple[V4Cidr, ...] = ()
    # ClusterIP of kubernetes.default (kubeadm's default)
    kube_api_addresses: tuple[IPAddr, ...] = (ipaddress.IPv4Address("10.96.0.1"),)
    kube_api_ports: tuple[Port, ...] = (443, 6443)
    metadata_addresses: tuple[IPAddr, ...] = Field(
        default=tuple(ipaddress.ip_address(a) for a in _METADATA), min_length=1)
    token_paths: tuple[AbsPath, ...] = (
        "/var/run/secrets/kubernetes.io/serviceaccount/",
        "/run/secrets/kubernetes.io/serviceaccount/",
        "/var/run/secrets/eks.amazonaws.com/serviceaccount/",
        "/var/run/secrets/tokens/",
    )
    miner_ports: tuple[Port, ...] = _MINER_PORTS
    miner_domains: tuple[Domain, ...] = _MINER_DOMAINS
    exceptions: tuple[RuntimeException, ...] = ()

    @field_validator("control_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[^\s]*)?$", url):
            raise ValueError(
                f"expected http(s)://host[:port]/path for Falco http_output, got {url!r}")
        return url

    @field_validator("exceptions")
    @classmethod
    def _unique_names(cls, items: tuple[RuntimeException, ...]) -> tuple[RuntimeException, ...]:
        seen: set[tuple[str, str]] = set()
        for item in items:
            if (item.rule, item.name) in seen:
                raise ValueError(f"exception {item.name!r} is listed twice for rule {item.rule}")
            seen.add((item.rule, item.name))
        return items

    def renders(self, kind: RuleKind) -> bool:
        return self.enabled and kind not in self.disable
