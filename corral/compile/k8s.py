"""Small builders for Kubernetes objects shared by the compilers. Pure."""

from __future__ import annotations

from typing import Any

from corral.model.policy import QUARANTINE_LABEL

MANAGED_BY = {"app.kubernetes.io/managed-by": "corral"}
NS_NAME_LABEL = "kubernetes.io/metadata.name"
GATEWAY_POD_LABELS = {
    "app.kubernetes.io/name": "corral-gateway",
    "app.kubernetes.io/part-of": "corral",
}


def meta(name: str, namespace: str | None = None, *, policy: str,
         labels: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if namespace is not None:
        out["namespace"] = namespace
    out["labels"] = {**MANAGED_BY, "corral.dev/policy": policy, **(labels or {})}
    if annotations:
        out["annotations"] = annotations
    return out


def obj(api_version: str, kind: str, metadata: dict[str, Any], **rest: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **rest}


def namespace_selector(name: str) -> dict[str, Any]:
    """Select a namespace by its immutable, API-server-set name label (not a label anyone sets)."""
    return {"matchLabels": {NS_NAME_LABEL: name}}


def not_quarantined(match_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod selector that never matches a quarantined pod.

    NetworkPolicies only add allowances, so a deny-all policy for quarantined pods cannot take
    away what another policy allows: every allowing selector must exclude them itself.
    """
    sel: dict[str, Any] = {}
    if match_labels:
        sel["matchLabels"] = dict(match_labels)
    sel["matchExpressions"] = [
        {"key": QUARANTINE_LABEL, "operator": "NotIn", "values": ["true"]}
    ]
    return sel
