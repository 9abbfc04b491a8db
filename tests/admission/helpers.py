"""Shared builders for the admission tests: policies with chosen controls, pods, workloads."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from corral.check.engine import Checker, Outcome
from corral.check.read import Document
from corral.model.load import parse_policy
from corral.model.policy import Policy

NS = "ai-workloads"
REGISTRIES = ["registry.example.com/agents/", "ghcr.io/corral-dev/"]


def make_policy(admission: dict[str, Any] | None = None,
                registries: list[str] | None = None) -> Policy:
    doc: dict[str, Any] = {
        "apiVersion": "corral.dev/v1alpha1", "kind": "Policy", "metadata": {"name": "t"},
        "spec": {"namespace": NS,
                 "registries": REGISTRIES if registries is None else registries,
                 "agents": [{"name": "a", "selector": {"app": "a"}}]},
    }
    if admission is not None:
        doc["spec"]["admission"] = admission
    policy, _ = parse_policy(json.dumps(doc))  # JSON: YAML 1.2 exactly, as the loader reads
    return policy


def only(*names: str, **settings: Any) -> dict[str, Any]:
    """An admission section with just the named controls enabled (with optional settings)."""
    from corral.model.admission import Controls

    controls: dict[str, Any] = dict.fromkeys(Controls.model_fields, False)
    for n in names:
        controls[n] = settings.get(n, True)
    return {"controls": controls}


GOOD_CONTAINER: dict[str, Any] = {
    "name": "app",
    "image": "registry.example.com/agents/research:1.4",
    "securityContext": {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
}


def good_pod_spec() -> dict[str, Any]:
    return {"automountServiceAccountToken": False,
            "containers": [copy.deepcopy(GOOD_CONTAINER)]}


def pod(spec: dict[str, Any] | None = None, name: str = "p") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": spec if spec is not None else good_pod_spec()}


def workload(kind: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Deployment/StatefulSet/DaemonSet/ReplicaSet/Job/CronJob wrapping ``spec``."""
    template = {"metadata": {"labels": {"app": "a"}},
                "spec": spec if spec is not None else good_pod_spec()}
    group = {"Job": "batch/v1", "CronJob": "batch/v1"}.get(kind, "apps/v1")
    body: dict[str, Any] = {"template": template}
    if kind == "Job":
        template["spec"].setdefault("restartPolicy", "Never")
    if kind not in ("Job", "CronJob"):
        body["selector"] = {"matchLabels": {"app": "a"}}
    if kind == "StatefulSet":
        body["serviceName"] = "a"
    if kind == "CronJob":
        template["spec"].setdefault("restartPolicy", "Never")
        body = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
    return {"apiVersion": group, "kind": kind, "metadata": {"name": "w", "namespace": NS},
            "spec": body}


def run(checker: Checker, obj: dict[str, Any], operation: str = "CREATE",
        sub_resource: str = "") -> Outcome:
    return checker.check(Document("test", 1, obj, operation, sub_resource))


def failing(checker: Checker, obj: dict[str, Any], **kw: Any) -> set[str]:
    return {v.control for v in run(checker, obj, **kw).violations}


def draw_containers(draw: st.DrawFn,
                    make: Callable[[bool], st.SearchStrategy[dict[str, Any]]],
                    ephemeral_one_in: int) -> dict[str, Any]:
    """A pod spec's container lists from ``make(ephemeral)``: one or two containers, maybe an
    init container, and an ephemeral one in about ``ephemeral_one_in`` specs."""
    spec: dict[str, Any] = {"containers": draw(st.lists(make(False), min_size=1, max_size=2))}
    if draw(st.booleans()):
        spec["initContainers"] = draw(st.lists(make(False), min_size=1, max_size=1))
    if draw(st.integers(1, ephemeral_one_in)) == 1:
        spec["ephemeralContainers"] = draw(st.lists(make(True), min_size=1, max_size=1))
    return spec
