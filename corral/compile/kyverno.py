"""``spec.admission`` -> one Kyverno ClusterPolicy per control, validating with CEL. Pure.

Kyverno's ``validate.cel`` subrule takes the same ``variables`` and ``expressions`` as a
ValidatingAdmissionPolicy, so each policy carries exactly the CEL that ``admission_cel``
compiles and ``corral check`` runs: one semantics across the three engines. Scope: the same kinds
(``Pod/ephemeralcontainers`` included) in the agents' namespace, on CREATE and UPDATE.

Kyverno cannot run here; tests hold the objects to Kyverno's published ClusterPolicy field
layout. ``background`` is off: the CEL reads ``request``, which a background scan does not have.
"""

from __future__ import annotations

from typing import Any

from corral.compile.admission_cel import CelControl, cel_controls, policy_name, variables
from corral.compile.output import Files, manifest
from corral.model.policy import Policy

API = "kyverno.io/v1"
KINDS = ("Pod", "Pod/ephemeralcontainers", "Deployment", "StatefulSet", "DaemonSet",
         "ReplicaSet", "Job", "CronJob")
FAILURE_ACTION = {"deny": "Enforce", "warn": "Audit", "audit": "Audit"}


def cluster_policy(policy: Policy, ctl: CelControl) -> dict[str, Any]:
    action = policy.spec.admission.action
    name = ctl.name.replace("_", "-").lower()
    return {
        "apiVersion": API,
        "kind": "ClusterPolicy",
        "metadata": {
            "name": f"{policy_name(policy)}-{name}",
            "labels": {"app.kubernetes.io/managed-by": "corral"},
            "annotations": {"policies.kyverno.io/title": f"corral {ctl.name}",
                            "policies.kyverno.io/description": ctl.message},
        },
        "spec": {
            "background": False,
            "emitWarning": action == "warn",
            "rules": [{
                "name": name,
                "match": {"any": [{"resources": {
                    "kinds": list(KINDS), "namespaces": [policy.spec.namespace],
                    "operations": ["CREATE", "UPDATE"],
                }}]},
                "validate": {
                    "failureAction": FAILURE_ACTION[action],
                    "cel": {
                        "variables": [{"name": n, "expression": e} for n, e in variables(policy)],
                        "expressions": [{"expression": ctl.expression, "message": ctl.message,
                                         "messageExpression": ctl.message_expression}],
                    },
                },
            }],
        },
    }


def compile_kyverno(policy: Policy) -> Files:
    """Target ``admission-kyverno``: nothing when the policy does not select ``kyverno``."""
    if "kyverno" not in policy.spec.admission.engines:
        return {}
    return {"cluster-policies.yaml": manifest(*(cluster_policy(policy, c)
                                                for c in cel_controls(policy)))}
