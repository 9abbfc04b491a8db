"""``spec.admission`` -> OPA Gatekeeper ConstraintTemplate + Constraint per control (Rego v1). Pure.

Same controls and same semantics as ``admission_cel`` (tests run both engines on the same objects
and demand the same verdicts): the pod spec of a Pod, workload template or CronJob; containers,
init and ephemeral containers; pod UPDATEs of the main resource re-check images only. Values
that differ per policy (registry rules, tags, capabilities, profiles, exempt images) travel as
Constraint ``parameters``, so the Rego of a template never changes with the policy.

Rego is emitted for the v1 language (``violation contains ... if``) and placed under ``code:``
with ``engine: Rego`` and ``source.version: v1``; the legacy top-level ``rego:`` field is not
written (Gatekeeper reads it as v0, and v0 partial-set rules are what some engines misread).
Only constructs PyPI ``regopy`` evaluates correctly are used: helper rules instead of
``f(x[_])``, ``%s`` (never ``%v``) in ``sprintf``, key tests through ``object.keys``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corral.compile import admission_images as img
from corral.compile import admission_pss as pss
from corral.compile import admission_pss_rego as pss_rego
from corral.compile.admission_cel import (
    CONTROLS,
    IMAGE_CONTROLS,
    KINDS,
    own_controls,
    policy_name,
    pss_checks,
)
from corral.compile.output import Files, manifest
from corral.model.admission import (
    Capabilities,
    ContainerControl,
    Control,
    Limits,
    Seccomp,
    Tags,
)
from corral.model.policy import Policy

TEMPLATE_API = "templates.gatekeeper.sh/v1"
CONSTRAINT_API = "constraints.gatekeeper.sh/v1beta1"
TARGET = "admission.k8s.gatekeeper.sh"
ENFORCEMENT = {"deny": "deny", "warn": "warn", "audit": "dryrun"}
_GROUPS = {"Pod": "", "Job": "batch", "CronJob": "batch"}

LIB = """
obj := input.review.object

pod_spec := obj.spec if obj.kind == "Pod"

pod_spec := obj.spec.jobTemplate.spec.template.spec if obj.kind == "CronJob"

pod_spec := obj.spec.template.spec if not obj.kind in {"Pod", "CronJob"}

containers := object.get(pod_spec, "containers", [])

init_containers := object.get(pod_spec, "initContainers", [])

ephemeral_containers := object.get(pod_spec, "ephemeralContainers", [])

all_containers := array.concat(array.concat(containers, init_containers), ephemeral_containers)

# ephemeral containers cannot have resources
limit_containers := array.concat(containers, init_containers)

# A pod's security fields are immutable: its plain UPDATEs only re-check images.
pod_update if {
	obj.kind == "Pod"
	input.review.operation == "UPDATE"
	object.get(input.review, "subResource", "") != "ephemeralcontainers"
}

has_key(x, k) if k in object.keys(x)

is_true(x, k) if {
	has_key(x, k)
	x[k] == true
}

# helpers, not object.get defaults: regopy's sprintf quotes those
name_of(c) := c.name if is_string(c.name)

name_of(c) := "?" if not is_string(c.name)

image_of(c) := c.image if is_string(c.image)

image_of(c) := "none" if not is_string(c.image)

# with a Pod Security level, Linux-only controls skip Windows pods, as the standard does
windows_pod if {
	object.get(input.parameters, "windowsExempt", false) == true
	pod_spec.os.name == "windows"
}

exempt(c) if {
	some e in object.get(input.parameters, "exemptImages", [])
	not endswith(e, "*")
	c.image == e
}

exempt(c) if {
	some e in object.get(input.parameters, "exemptImages", [])
	endswith(e, "*")
	startswith(c.image, trim_suffix(e, "*"))
}

violation contains {"msg": msg} if {
	not pod_spec
	msg := sprintf("%s: no pod spec in this %s (refused: failurePolicy Fail)", [control, obj.kind])
}
"""

_CONTAINER_RULE = """
violation contains {{"msg": msg}} if {{
{guard}	some c in {items}
	not exempt(c)
	not ok(c)
	msg := sprintf("%s: container %s {text}{image}", [control, name_of(c){image_arg}])
}}
"""

_POD_RULE = """
violation contains {{"msg": msg}} if {{
	not pod_update
	bad
	msg := sprintf("%s: the pod {text}", [control])
}}
"""

_PREDICATES: dict[str, str] = {
    "registries": f"""
ok(c) if {{
	is_string(c.image)
	located(c.image)
	digest_ok(c.image)
	tag_length_ok(c.image)
}}

located(image) if {{
	some r in input.parameters.fast
	startswith(image, r.lead)
	regex.match(r.lower, image)
}}

located(image) if {{
	regex.match(`{img.UPPER_REGISTRY}`, image)
	some r in input.parameters.fast
	regex.match(r.include, image)
}}

located(image) if {{
	some r in input.parameters.slow
	regex.match(r.include, image)
	not excluded(r, image)
}}

excluded(r, image) if regex.match(r.exclude, image)

digest_ok(image) if not contains(image, "@")

digest_ok(image) if regex.match(`{img.DIGEST_OK}`, image)

tag_length_ok(image) if count(image) < {img.LONG_TAG_MIN}

tag_length_ok(image) if not regex.match(`{img.LONG_TAG}`, image)
""",
    "tags": f"""
ok(c) if {{
	is_string(c.image)
	not mutable_tag(c.image)
	not untagged(c.image)
}}

mutable_tag(image) if {{
	some t in input.parameters.disallowed
	endswith(image, concat("", [":", t]))
}}

mutable_tag(image) if {{
	some t in input.parameters.disallowed
	contains(image, concat("", [":", t, "@"]))
}}

untagged(image) if {{
	input.parameters.require == true
	regex.match(`{img.UNTAGGED}`, image)
}}
""",
    "digest": f"""
ok(c) if {{
	is_string(c.image)
	regex.match(`{img.PINNED}`, c.image)
}}
""",
    "privileged": """
ok(c) if not privileged(c)

privileged(c) if is_true(c.securityContext, "privileged")
""",
    "privilege_escalation": """
ok(c) if {
	has_key(c.securityContext, "allowPrivilegeEscalation")
	c.securityContext.allowPrivilegeEscalation == false
}
""",
    "capabilities": """
ok(c) if {
	adds_ok(c)
	drops_ok(c)
}

has_add(c) if has_key(c.securityContext.capabilities, "add")

adds_ok(c) if not has_add(c)

adds_ok(c) if {
	has_add(c)
	every a in c.securityContext.capabilities.add {
		a in input.parameters.allowed
	}
}

drops_ok(c) if input.parameters.requireDropAll == false

drops_ok(c) if {
	some d in c.securityContext.capabilities.drop
	d == "ALL"
}
""",
    "run_as_non_root": """
ok(c) if {
	non_root(c)
	user_ok(c)
}

non_root(c) if {
	has_key(c.securityContext, "runAsNonRoot")
	c.securityContext.runAsNonRoot == true
}

non_root(c) if {
	not has_key(c.securityContext, "runAsNonRoot")
	has_key(pod_spec.securityContext, "runAsNonRoot")
	pod_spec.securityContext.runAsNonRoot == true
}

user_ok(c) if {
	has_key(c.securityContext, "runAsUser")
	c.securityContext.runAsUser != 0
}

user_ok(c) if {
	not has_key(c.securityContext, "runAsUser")
	not pod_root
}

pod_root if {
	has_key(pod_spec.securityContext, "runAsUser")
	pod_spec.securityContext.runAsUser == 0
}
""",
    "seccomp": """
ok(c) if {
	has_key(c.securityContext, "seccompProfile")
	profile_ok(c.securityContext.seccompProfile)
}

ok(c) if {
	not has_key(c.securityContext, "seccompProfile")
	has_key(pod_spec.securityContext, "seccompProfile")
	profile_ok(pod_spec.securityContext.seccompProfile)
}

profile_ok(p) if {
	has_key(p, "type")
	p.type in input.parameters.profiles
}
""",
    "read_only_root_filesystem": """
ok(c) if is_true(c.securityContext, "readOnlyRootFilesystem")
""",
    "limits": """
ok(c) if {
	every r in input.parameters.resources {
		has_key(c.resources.limits, r)
	}
}
""",
    "host_namespaces": """
bad if is_true(pod_spec, "hostPID")

bad if is_true(pod_spec, "hostIPC")
""",
    "host_network": """
bad if is_true(pod_spec, "hostNetwork")
""",
    "host_path": """
bad if {
	some v in object.get(pod_spec, "volumes", [])
	has_key(v, "hostPath")
}
""",
    "automount_token": """
bad if not automount_off

automount_off if {
	has_key(pod_spec, "automountServiceAccountToken")
	pod_spec.automountServiceAccountToken == false
}
""",
}


@dataclass(frozen=True, slots=True)
class RegoControl:
    """One control as a Gatekeeper template: ``rego`` (package ``package``) + ``parameters``."""

    name: str
    kind: str
    package: str
    rego: str
    parameters: dict[str, Any]


def _kind(name: str) -> str:
    return "Corral" + "".join(p.capitalize() for p in name.split("_"))


def _rego(name: str) -> str:
    _, var, text = CONTROLS[name]
    package = f"corral.{name}"
    head = f"package {package}\n\ncontrol := \"{name}\"\n" + LIB
    if var is None:
        rule = _POD_RULE.format(text=text)
    else:
        guard = "" if name in IMAGE_CONTROLS else "\tnot pod_update\n"
        if name in pss.LINUX_ONLY:
            guard += "\tnot windows_pod\n"
        items = "limit_containers" if var == "limitContainers" else "all_containers"
        is_image = name in IMAGE_CONTROLS
        rule = _CONTAINER_RULE.format(
            guard=guard, items=items, text=text, image=" (%s)" if is_image else "",
            image_arg=", image_of(c)" if is_image else "")
    return head + rule + _PREDICATES[name]


def _parameters(policy: Policy, name: str, ctl: Control) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if isinstance(ctl, ContainerControl):
        params["exemptImages"] = list(ctl.exempt_images)
    if name in pss.LINUX_ONLY:
        params["windowsExempt"] = policy.spec.admission.pod_security is not None
    if name == "registries":
        rules = img.registry_rules(policy.spec.registries)
        params["fast"] = [{"lead": r.lead, "lower": r.lower, "include": r.include}
                          for r in rules if r.lead]
        params["slow"] = [{"include": r.include} | ({"exclude": r.exclude} if r.exclude else {})
                          for r in rules if not r.lead]
    elif isinstance(ctl, Tags):
        params |= {"disallowed": list(ctl.disallowed), "require": ctl.require}
    elif isinstance(ctl, Capabilities):
        params |= {"allowed": list(ctl.allowed), "requireDropAll": ctl.require_drop_all}
    elif isinstance(ctl, Seccomp):
        params["profiles"] = list(ctl.profiles)
    elif isinstance(ctl, Limits):
        params["resources"] = list(ctl.resources)
    return params


def _pss_control(policy: Policy, check: pss.Check) -> RegoControl:
    setting = policy.spec.admission.pod_security
    assert setting is not None
    name = pss.control_name(check)
    head = f"package corral.{name}\n\ncontrol := \"{pss.message(check, setting)}\"\n"
    return RegoControl(name, _kind(name), f"corral.{name}",
                       head + LIB + pss_rego.rego_body(check),
                       pss.parameters(check, pss.minor(setting.version)))


def rego_controls(policy: Policy) -> tuple[RegoControl, ...]:
    """Every enabled control, in declaration order, then the Pod Security Standards checks."""
    own = tuple(
        RegoControl(n, _kind(n), f"corral.{n}", _rego(n), _parameters(policy, n, c))
        for n, c in own_controls(policy).items()
    )
    return own + tuple(_pss_control(policy, c) for c in pss_checks(policy))


def _schema(value: Any) -> dict[str, Any]:
    """Structural OpenAPI schema for a parameter value (Gatekeeper v1 requires one)."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, dict):
        return {"type": "object", "properties": {k: _schema(v) for k, v in value.items()}}
    item: dict[str, Any] = {"type": "string"}
    if value and isinstance(value[0], dict):
        keys = sorted({k for v in value for k in v})
        item = {"type": "object", "properties": {k: {"type": "string"} for k in keys}}
    return {"type": "array", "items": item}


def template(ctl: RegoControl) -> dict[str, Any]:
    return {
        "apiVersion": TEMPLATE_API,
        "kind": "ConstraintTemplate",
        "metadata": {"name": ctl.kind.lower(),
                     "labels": {"app.kubernetes.io/managed-by": "corral"}},
        "spec": {
            "crd": {"spec": {"names": {"kind": ctl.kind},
                             "validation": {"openAPIV3Schema": _schema(ctl.parameters)}}},
            "targets": [{"target": TARGET, "code": [
                {"engine": "Rego", "source": {"version": "v1", "rego": ctl.rego}},
            ]}],
        },
    }


def match(policy: Policy) -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for kind in KINDS:
        groups.setdefault(_GROUPS.get(kind, "apps"), []).append(kind)
    return {"kinds": [{"apiGroups": [g], "kinds": k} for g, k in groups.items()],
            "namespaces": [policy.spec.namespace]}


def constraint(policy: Policy, ctl: RegoControl) -> dict[str, Any]:
    return {
        "apiVersion": CONSTRAINT_API,
        "kind": ctl.kind,
        "metadata": {"name": f"{policy_name(policy)}-{ctl.name.replace('_', '-').lower()}",
                     "labels": {"app.kubernetes.io/managed-by": "corral"}},
        "spec": {
            "enforcementAction": ENFORCEMENT[policy.spec.admission.action],
            "match": match(policy),
            "parameters": ctl.parameters,
        },
    }


def compile_gatekeeper(policy: Policy) -> Files:
    """Target ``admission-gatekeeper``: templates (they create the CRDs), then constraints."""
    if "gatekeeper" not in policy.spec.admission.engines:
        return {}
    controls = rego_controls(policy)
    return {
        "constraint-templates.yaml": manifest(*(template(c) for c in controls)),
        "constraints.yaml": manifest(*(constraint(policy, c) for c in controls)),
    }
