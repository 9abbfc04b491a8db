"""The rendered ValidatingAdmissionPolicy and Binding: schema-valid (kubernetes-validate,
strict, pinned), scoped to the agents' namespace, and the action the policy asks for."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from corral.compile.admission_cel import compile_vap
from corral.compile.render import render_all
from corral.model.policy import Policy
from tests.admission.helpers import NS, make_policy

K8S_VERSION = "1.34.0"  # pinned: VAP v1 is GA since 1.30


def rendered(policy: Policy, folder: str) -> list[dict[str, Any]]:
    files = render_all(policy, {folder})[folder]
    return [d for f in files.values() for d in yaml.safe_load_all(f.render()) if d]


def test_vap_and_binding_validate_strictly() -> None:
    objs = rendered(make_policy(), "admission-vap")
    assert [o["kind"] for o in objs] == ["ValidatingAdmissionPolicy",
                                         "ValidatingAdmissionPolicyBinding"]
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    bad = objs[0] | {"spec": objs[0]["spec"] | {"validationz": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_scope_and_resources() -> None:
    vap, binding = rendered(make_policy(), "admission-vap")
    sel = {"matchLabels": {"kubernetes.io/metadata.name": NS}}
    assert vap["spec"]["matchConstraints"]["namespaceSelector"] == sel
    assert binding["spec"]["matchResources"]["namespaceSelector"] == sel
    resources = {r for rule in vap["spec"]["matchConstraints"]["resourceRules"]
                 for r in rule["resources"]}
    assert resources == {"pods", "pods/ephemeralcontainers", "deployments", "statefulsets",
                         "daemonsets", "replicasets", "jobs", "cronjobs"}
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert all("messageExpression" in v for v in vap["spec"]["validations"])


@pytest.mark.parametrize(("action", "expected"), [("warn", ["Warn"]), ("audit", ["Audit"])])
def test_action(action: str, expected: list[str]) -> None:
    _, binding = rendered(make_policy({"action": action}), "admission-vap")
    assert binding["spec"]["validationActions"] == expected


def test_engine_not_selected_renders_nothing() -> None:
    assert compile_vap(make_policy({"engines": ["gatekeeper"]})) == {}


def test_deterministic() -> None:
    a = render_all(make_policy(), {"admission-vap"})["admission-vap"]
    b = render_all(make_policy(), {"admission-vap"})["admission-vap"]
    assert {k: v.render() for k, v in a.items()} == {k: v.render() for k, v in b.items()}
