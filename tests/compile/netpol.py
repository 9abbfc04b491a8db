"""A small evaluator of Kubernetes NetworkPolicy semantics, for asserting what rendered policies
permit (who may reach what, on which port), not just what they say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str]


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": labels.get(key) in values,
              "NotIn": labels.get(key) not in values,
              "Exists": key in labels,
              "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _peer_matches(peer: dict[str, Any], pod: Pod, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        return False
    ns_sel = peer.get("namespaceSelector")
    ns_ok = (pod.namespace == policy_ns) if ns_sel is None else selects(
        ns_sel, {"kubernetes.io/metadata.name": pod.namespace})
    pod_sel = peer.get("podSelector", {})
    return ns_ok and selects(pod_sel, pod.labels)


def _port_ok(rule: dict[str, Any], port: int, proto: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    return any(p.get("port") == port and p.get("protocol", "TCP") == proto for p in ports)


def _isolated(policies: list[dict[str, Any]], pod: Pod, direction: str) -> list[dict[str, Any]]:
    return [p for p in policies
            if p["kind"] == "NetworkPolicy" and p["metadata"]["namespace"] == pod.namespace
            and selects(p["spec"]["podSelector"], pod.labels)
            and direction in p["spec"].get("policyTypes", [])]


def allowed(policies: list[dict[str, Any]], src: Pod, dst: Pod, port: int,
            proto: str = "TCP") -> bool:
    """Would a connection src -> dst:port be admitted by both ends' policies?"""
    egress = _isolated(policies, src, "Egress")
    eg_ok = not egress or any(
        _port_ok(rule, port, proto) and any(_peer_matches(peer, dst, src.namespace)
                                            for peer in rule.get("to", [{}]))
        for p in egress for rule in p["spec"].get("egress", []))
    ingress = _isolated(policies, dst, "Ingress")
    in_ok = not ingress or any(
        _port_ok(rule, port, proto) and any(_peer_matches(peer, src, dst.namespace)
                                            for peer in rule.get("from", [{}]))
        for p in ingress for rule in p["spec"].get("ingress", []))
    return eg_ok and in_ok
