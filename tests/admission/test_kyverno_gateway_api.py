"""Kyverno ClusterPolicies and Gateway API objects. Neither Kyverno nor a Gateway controller can
run here: the objects are held to the engines' published field layouts (strict JSON Schemas of
the fields corral writes, transcribed from the CRDs), the Kyverno CEL is run by the real CEL
engine, and routing is checked with Gateway API's documented precedence rules."""

from __future__ import annotations

from typing import Any

import cel
import jsonschema  # type: ignore[import-untyped]  # no stubs; dev dependency via kubernetes-validate
import pytest

from corral.check.engine import bind_variables
from corral.compile.admission_cel import vap
from corral.compile.gateway_api import compile_gateway_api
from corral.compile.kyverno import compile_kyverno
from corral.model.errors import PolicyError
from corral.model.load import parse_policy
from corral.model.policy import Policy
from tests.admission.helpers import NS, make_policy, pod
from tests.admission.test_gatekeeper_render import _STR, _STRS, _obj

pytestmark = pytest.mark.engine

_CEL_ITEM = {"type": "array", "minItems": 1, "items": {
    "type": "object", "additionalProperties": False, "required": ["expression"],
    "properties": {"expression": _STR, "message": _STR, "messageExpression": _STR,
                   "name": _STR}}}
CLUSTER_POLICY = _obj({
    "apiVersion": {"const": "kyverno.io/v1"},
    "kind": {"const": "ClusterPolicy"},
    "metadata": _obj({"name": _STR, "labels": {"type": "object"},
                      "annotations": {"type": "object"}}, ["name"]),
    "spec": _obj({
        "background": {"type": "boolean"},
        "emitWarning": {"type": "boolean"},
        "rules": {"type": "array", "minItems": 1, "items": _obj({
            "name": {"type": "string", "maxLength": 63},
            "match": _obj({"any": {"type": "array", "items": _obj({"resources": _obj({
                "kinds": _STRS, "namespaces": _STRS,
                "operations": {"type": "array",
                               "items": {"enum": ["CREATE", "UPDATE", "DELETE", "CONNECT"]}},
            })})}}),
            "validate": _obj({
                "failureAction": {"enum": ["Audit", "Enforce"]},
                "cel": _obj({"variables": _CEL_ITEM, "expressions": _CEL_ITEM}),
            }),
        })},
    }),
})


def kyverno_objects(policy: Policy) -> list[dict[str, Any]]:
    return list(compile_kyverno(policy)["cluster-policies.yaml"].objects)  # type: ignore[union-attr]


def test_kyverno_layout_and_same_cel_as_vap() -> None:
    policy = make_policy()
    objs = kyverno_objects(policy)
    spec = vap(policy)["spec"]
    assert len(objs) == len(spec["validations"]) == 13
    for obj, validation in zip(objs, spec["validations"], strict=True):
        jsonschema.validate(obj, CLUSTER_POLICY)
        rule = obj["spec"]["rules"][0]
        assert rule["match"]["any"][0]["resources"]["namespaces"] == [NS]
        assert "Pod/ephemeralcontainers" in rule["match"]["any"][0]["resources"]["kinds"]
        assert rule["validate"]["cel"]["variables"] == spec["variables"]
        assert rule["validate"]["cel"]["expressions"][0]["expression"] == validation["expression"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(objs[0] | {"spec": {"rules": [{"name": "x", "validate": {
            "failureAction": "Block"}}]}}, CLUSTER_POLICY)


def run_kyverno_rule(obj: dict[str, Any], rule: dict[str, Any]) -> bool:
    ctx = cel.Context()
    ctx.add_variable("object", obj)
    ctx.add_variable("request", {"operation": "CREATE", "subResource": ""})
    for v in rule["validate"]["cel"]["variables"]:
        ctx.add_variable(f"variables_{v['name']}",
                         cel.compile(bind_variables(v["expression"])).execute(ctx))
    expr = rule["validate"]["cel"]["expressions"][0]["expression"]
    return bool(cel.compile(bind_variables(expr)).execute(ctx))


def test_kyverno_cel_runs_and_fires() -> None:
    objs = {o["spec"]["rules"][0]["name"]: o["spec"]["rules"][0]
            for o in kyverno_objects(make_policy())}
    assert all(run_kyverno_rule(pod(), r) for r in objs.values())
    bad = pod({"hostPID": True, "containers": [{"name": "x", "image": "nginx"}]})
    failing = {n for n, r in objs.items() if not run_kyverno_rule(bad, r)}
    assert {"registries", "host-namespaces", "limits", "automount-token"} <= failing


@pytest.mark.parametrize(("action", "failure", "warn"),
                         [("deny", "Enforce", False), ("warn", "Audit", True),
                          ("audit", "Audit", False)])
def test_kyverno_action(action: str, failure: str, warn: bool) -> None:
    obj = kyverno_objects(make_policy({"action": action}))[0]
    assert obj["spec"]["rules"][0]["validate"]["failureAction"] == failure
    assert obj["spec"]["emitWarning"] is warn


# --- Gateway API ------------------------------------------------------------------------------

def ingress_policy(**extra: Any) -> Policy:
    import yaml

    doc = {"apiVersion": "corral.dev/v1alpha1", "kind": "Policy", "metadata": {"name": "t"},
           "spec": {"namespace": NS, "agents": [
               {"name": "research", "selector": {"app": "r"},
                "ingress": {"service": "research", "port": 8000,
                            "hostnames": ["agents.example.com"],
                            "rate": {"requests_per_minute": 60},
                            "auth": {"jwt": {"issuer": "https://idp.example.com",
                                             "jwks_uri": "https://idp.example.com/jwks"}}}},
               {"name": "coder", "selector": {"app": "c"},
                "ingress": {"service": "coder", "port": 9000, "match": "query", "key": "agent",
                            "rate": {"requests_per_minute": 600}} | extra},
               {"name": "batch", "selector": {"app": "b"}},
           ]}}
    policy, _ = parse_policy(yaml.safe_dump(doc))
    return policy


_REF = _obj({"group": _STR, "kind": _STR, "name": _STR})
_MATCH = {"type": "array", "items": _obj({"type": {"enum": ["Exact", "RegularExpression"]},
                                          "name": _STR, "value": _STR})}
GATEWAY = _obj({"apiVersion": {"const": "gateway.networking.k8s.io/v1"},
                "kind": {"const": "Gateway"}, "metadata": {"type": "object"},
                "spec": _obj({"gatewayClassName": _STR, "listeners": {
                    "type": "array", "items": _obj({
                    "name": _STR, "protocol": {"enum": ["HTTP", "HTTPS"]},
                    "port": {"type": "integer"},
                    "allowedRoutes": _obj({"namespaces": _obj({"from": {"enum": [
                        "Same", "All", "Selector"]}}), "kinds": {"type": "array", "items": _obj(
                            {"group": _STR, "kind": _STR})}})})}})})
HTTP_ROUTE = _obj({"apiVersion": {"const": "gateway.networking.k8s.io/v1"},
                   "kind": {"const": "HTTPRoute"}, "metadata": {"type": "object"},
                   "spec": _obj({
                       "parentRefs": {"type": "array", "items": _obj({"name": _STR})},
                       "hostnames": _STRS,
                       "rules": {"type": "array", "items": _obj({
                           "matches": {"type": "array", "items": _obj({
                               "headers": _MATCH, "queryParams": _MATCH,
                               "path": _obj({"type": {"enum": ["PathPrefix", "Exact"]},
                                             "value": _STR})}, [])},
                           "backendRefs": {"type": "array", "items": _obj({
                               "name": _STR, "port": {"type": "integer"}})},
                           "filters": {"type": "array", "items": _obj({
                               "type": {"const": "ExtensionRef"}, "extensionRef": _REF})},
                       }, ["matches"])}}, ["parentRefs", "rules"])})
ENVOY = {"BackendTrafficPolicy": _obj({"targetRefs": {"type": "array", "items": _REF},
                                       "rateLimit": _obj({"type": {"const": "Local"},
                                                          "local": {"type": "object"}})}),
         "SecurityPolicy": _obj({"targetRefs": {"type": "array", "items": _REF},
                                 "jwt": _obj({"providers": {"type": "array"}})}),
         "HTTPRouteFilter": _obj({"directResponse": _obj({
             "contentType": _STR, "statusCode": {"type": "integer"},
             "body": _obj({"type": {"const": "Inline"}, "inline": _STR})})})}


def gateway_objects(policy: Policy) -> list[dict[str, Any]]:
    return [o for f in compile_gateway_api(policy).values() for o in f.objects]  # type: ignore[union-attr]


def test_gateway_api_layout() -> None:
    objs = gateway_objects(ingress_policy())
    kinds = [o["kind"] for o in objs]
    assert kinds.count("HTTPRoute") == 3 and kinds.count("BackendTrafficPolicy") == 2
    assert kinds.count("SecurityPolicy") == 1 and kinds.count("Gateway") == 1
    for obj in objs:
        assert obj["metadata"]["namespace"] == NS
        if obj["kind"] == "Gateway":
            jsonschema.validate(obj, GATEWAY)
        elif obj["kind"] == "HTTPRoute":
            jsonschema.validate(obj, HTTP_ROUTE)
        else:
            assert obj["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
            jsonschema.validate(obj["spec"], ENVOY[obj["kind"]])
    names = {o["metadata"]["name"] for o in objs if o["kind"] == "HTTPRoute"}
    for obj in objs:
        for ref in obj["spec"].get("targetRefs", []):
            assert ref["name"] in names


def route_request(objs: list[dict[str, Any]], host: str, headers: dict[str, str],
                  query: dict[str, str]) -> str:
    """Gateway API precedence, reduced to what corral emits: among matching rules, more header
    matches win, then more query matches; returns the backend or 'deny'/'404'."""
    best: tuple[int, int, str] | None = None
    for route in (o for o in objs if o["kind"] == "HTTPRoute"):
        hostnames = route["spec"].get("hostnames")
        if hostnames and host not in hostnames:
            continue
        for rule in route["spec"]["rules"]:
            for m in rule["matches"]:
                heads = m.get("headers", [])
                params = m.get("queryParams", [])
                if all(headers.get(h["name"].lower()) == h["value"] for h in heads) \
                        and all(query.get(q["name"]) == q["value"] for q in params):
                    target = rule["backendRefs"][0]["name"] if "backendRefs" in rule else "deny"
                    score = (len(m.get("headers", [])), len(m.get("queryParams", [])), target)
                    best = max(best, score) if best else score
    return best[2] if best else "404"


@pytest.mark.parametrize(("host", "headers", "query", "expected"), [
    ("agents.example.com", {"x-agent-type": "research"}, {}, "research"),
    ("other.example.com", {"x-agent-type": "research"}, {}, "deny"),
    ("any", {}, {"agent": "coder"}, "coder"),
    ("any", {"x-agent-type": "coder"}, {}, "deny"),
    ("any", {}, {"agent": "batch"}, "deny"),
    ("any", {}, {}, "deny"),
])
def test_routing_by_type_and_deny_by_default(host: str, headers: dict[str, str],
                                             query: dict[str, str], expected: str) -> None:
    assert route_request(gateway_objects(ingress_policy()), host, headers, query) == expected


def test_limits_differ_per_agent_type() -> None:
    objs = gateway_objects(ingress_policy())
    limits = {o["spec"]["targetRefs"][0]["name"]:
              o["spec"]["rateLimit"]["local"]["rules"][0]["limit"]["requests"]
              for o in objs if o["kind"] == "BackendTrafficPolicy"}
    assert limits == {"corral-agent-research": 60, "corral-agent-coder": 600}


def test_no_ingress_renders_nothing() -> None:
    assert compile_gateway_api(make_policy()) == {}


def test_bad_ingress_is_a_policy_error() -> None:
    with pytest.raises(PolicyError) as exc:
        ingress_policy(key="bad header")
    assert any("ingress" in p.path for p in exc.value.problems)
