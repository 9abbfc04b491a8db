"""Agent ingress -> Gateway API objects and Envoy Gateway policies. Pure.

For the agents that accept traffic (``spec.agents[].ingress``): one Gateway in the agents'
namespace that admits routes from that namespace only; per agent an HTTPRoute matching its type
by header or query parameter, a BackendTrafficPolicy (local rate limit) and a SecurityPolicy (JWT)
targeting that route, so each agent type gets its own limit and its own authentication; and a
catch-all route answering 403 (an Envoy Gateway HTTPRouteFilter direct response) so a request
that names no known agent type never reaches a backend. Gateway API route precedence puts
header/query matches ahead of the path-only catch-all.
"""

from __future__ import annotations

from typing import Any

from corral.compile.output import Files, manifest
from corral.model.ingress import Ingress
from corral.model.policy import Agent, Policy

GATEWAY_API = "gateway.networking.k8s.io/v1"
ENVOY_API = "gateway.envoyproxy.io/v1alpha1"
GATEWAY_CLASS = "eg"  # Envoy Gateway's default GatewayClass name
GATEWAY_NAME = "corral-agents"
DENY_FILTER = "corral-deny-unmatched"
_LABELS = {"app.kubernetes.io/managed-by": "corral"}


def _meta(name: str, policy: Policy) -> dict[str, Any]:
    return {"name": name, "namespace": policy.spec.namespace, "labels": dict(_LABELS)}


def gateway(policy: Policy) -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY_API, "kind": "Gateway", "metadata": _meta(GATEWAY_NAME, policy),
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [{
                "name": "http", "protocol": "HTTP", "port": 80,
                "allowedRoutes": {"namespaces": {"from": "Same"},
                                  "kinds": [{"group": "gateway.networking.k8s.io",
                                             "kind": "HTTPRoute"}]},
            }],
        },
    }


def _match(agent: Agent, ing: Ingress) -> dict[str, Any]:
    value = ing.value or agent.name
    key = "headers" if ing.match == "header" else "queryParams"
    return {key: [{"type": "Exact", "name": ing.key, "value": value}]}


def _route_name(agent: Agent) -> str:
    return f"corral-agent-{agent.name}"


def route(policy: Policy, agent: Agent, ing: Ingress) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": [{"name": GATEWAY_NAME}]}
    if ing.hostnames:
        spec["hostnames"] = list(ing.hostnames)
    spec["rules"] = [{"matches": [_match(agent, ing)],
                      "backendRefs": [{"name": ing.service, "port": ing.port}]}]
    return {"apiVersion": GATEWAY_API, "kind": "HTTPRoute",
            "metadata": _meta(_route_name(agent), policy), "spec": spec}


def _target(agent: Agent) -> list[dict[str, Any]]:
    return [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
             "name": _route_name(agent)}]


def rate_limit(policy: Policy, agent: Agent, ing: Ingress) -> dict[str, Any] | None:
    if ing.rate is None:
        return None
    return {
        "apiVersion": ENVOY_API, "kind": "BackendTrafficPolicy",
        "metadata": _meta(f"corral-agent-{agent.name}-rate", policy),
        "spec": {"targetRefs": _target(agent), "rateLimit": {"type": "Local", "local": {
            "rules": [{"limit": {"requests": ing.rate.requests_per_minute, "unit": "Minute"}}],
        }}},
    }


def security(policy: Policy, agent: Agent, ing: Ingress) -> dict[str, Any] | None:
    if ing.auth is None:
        return None
    jwt = ing.auth.jwt
    provider: dict[str, Any] = {"name": agent.name, "issuer": jwt.issuer,
                                "remoteJWKS": {"uri": jwt.jwks_uri}}
    if jwt.audiences:
        provider["audiences"] = list(jwt.audiences)
    return {
        "apiVersion": ENVOY_API, "kind": "SecurityPolicy",
        "metadata": _meta(f"corral-agent-{agent.name}-auth", policy),
        "spec": {"targetRefs": _target(agent), "jwt": {"providers": [provider]}},
    }


def deny_unmatched(policy: Policy) -> tuple[dict[str, Any], dict[str, Any]]:
    """The catch-all: anything not routed to a known agent type gets a readable 403."""
    body = ("corral: no agent type matched this request; name one with the header or query "
            "parameter your platform team documented\n")
    flt = {"apiVersion": ENVOY_API, "kind": "HTTPRouteFilter",
           "metadata": _meta(DENY_FILTER, policy),
           "spec": {"directResponse": {"contentType": "text/plain", "statusCode": 403,
                                       "body": {"type": "Inline", "inline": body}}}}
    rte = {"apiVersion": GATEWAY_API, "kind": "HTTPRoute",
           "metadata": _meta(DENY_FILTER, policy),
           "spec": {"parentRefs": [{"name": GATEWAY_NAME}], "rules": [{
               "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
               "filters": [{"type": "ExtensionRef", "extensionRef": {
                   "group": "gateway.envoyproxy.io", "kind": "HTTPRouteFilter",
                   "name": DENY_FILTER}}],
           }]}}
    return flt, rte


def compile_gateway_api(policy: Policy) -> Files:
    """Target ``gateway-api``: nothing when no agent has an ``ingress`` section."""
    agents = [(a, a.ingress) for a in policy.spec.agents if a.ingress is not None]
    if not agents:
        return {}
    routes = [route(policy, a, i) for a, i in agents]
    policies = [p for a, i in agents for p in (rate_limit(policy, a, i), security(policy, a, i))
                if p is not None]
    deny_filter, deny_route = deny_unmatched(policy)
    return {
        "gateway.yaml": manifest(gateway(policy)),
        "routes.yaml": manifest(*routes, deny_route),
        "envoy-gateway-policies.yaml": manifest(deny_filter, *policies),
    }
