"""``spec.agents[].ingress``: how traffic reaches an agent that accepts it (Gateway API).

One shared Gateway in the agents' namespace; each agent with an ``ingress`` section gets an
HTTPRoute that matches its type by header (default ``x-agent-type: <agent name>``) or by query
parameter, plus its own rate limit and authentication (Envoy Gateway policies), so different
agent types get different limits. Compiled by ``corral.compile.gateway_api``. Pure; must not
import ``policy.py`` (it imports us).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from corral.model.policy_base import Strict

_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$")
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SERVICE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _token(value: str) -> str:
    if not _HEADER.match(value):
        raise ValueError(f"expected an HTTP header or query parameter name, got {value!r}")
    return value


def _hostname(value: str) -> str:
    if not _HOSTNAME.match(value) or len(value) > 253:
        raise ValueError(f"expected a lower-case DNS name (optionally *.), got {value!r}")
    return value


def _service(value: str) -> str:
    if not _SERVICE.match(value):
        raise ValueError(f"expected a Kubernetes Service name (DNS-1123 label), got {value!r}")
    return value


class IngressRate(Strict):
    requests_per_minute: int = Field(gt=0)


class Jwt(Strict):
    """Requests must carry a JWT from ``issuer`` signed by a key in ``jwks_uri``."""

    issuer: str = Field(min_length=1)
    jwks_uri: str = Field(pattern=r"^https://\S+$")
    audiences: tuple[str, ...] = ()


class IngressAuth(Strict):
    jwt: Jwt


class Ingress(Strict):
    service: Annotated[str, AfterValidator(_service)]
    port: int = Field(ge=1, le=65535)
    hostnames: tuple[Annotated[str, AfterValidator(_hostname)], ...] = ()
    match: Literal["header", "query"] = "header"
    key: Annotated[str, AfterValidator(_token)] = "x-agent-type"
    value: str | None = Field(default=None, min_length=1, max_length=4096)  # agent name if unset
    rate: IngressRate | None = None
    auth: IngressAuth | None = None
