"""``spec.admission`` -> Kubernetes ValidatingAdmissionPolicy + Binding (CEL). Pure.

One ``CelControl`` per enabled control; the VAP carries them as ``validations`` (expression +
messageExpression), with shared ``variables`` that extract the pod spec from a Pod, a workload
template or a CronJob's job template, and the containers, init containers and ephemeral
containers. ``corral check`` compiles exactly these strings with the Python CEL engine; Kyverno's
CEL rules reuse them. The CEL stays inside what both Kubernetes and that engine accept: standard
macros, ``matches``/``startsWith``, ``has()`` guarded one level at a time, no optional types, no
``cel.bind``, no string extension library.

Pod UPDATEs of the main resource only re-check image controls (security context, host namespaces
and volumes are immutable there, and Gatekeeper's library skips them likewise); an UPDATE of the
``pods/ephemeralcontainers`` subresource is checked in full.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.compile import admission_images as img
from corral.compile import admission_pss as pss
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

VAP_API = "admissionregistration.k8s.io/v1"
ACTIONS = {"deny": "Deny", "warn": "Warn", "audit": "Audit"}

# (group, version, resource) the policy matches; a pod template anywhere is checked at apply time.
RESOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("pods", "pods/ephemeralcontainers")),
    ("apps", ("deployments", "statefulsets", "daemonsets", "replicasets")),
    ("batch", ("jobs", "cronjobs")),
)
KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")

VARIABLES: tuple[tuple[str, str], ...] = (
    ("podSpec",
     "object.kind == 'Pod' ? object.spec : (object.kind == 'CronJob' ? "
     "object.spec.jobTemplate.spec.template.spec : object.spec.template.spec)"),
    ("containers",
     "has(variables.podSpec.containers) ? variables.podSpec.containers : []"),
    ("initContainers",
     "has(variables.podSpec.initContainers) ? variables.podSpec.initContainers : []"),
    ("ephemeralContainers",
     "has(variables.podSpec.ephemeralContainers) ? variables.podSpec.ephemeralContainers : []"),
    ("allContainers",
     "variables.containers + variables.initContainers + variables.ephemeralContainers"),
    ("podUpdate",
     "object.kind == 'Pod' && request.operation == 'UPDATE' && "
     "request.subResource != 'ephemeralcontainers'"),
)
IMAGE_CONTROLS = frozenset({"registries", "tags", "digest"})
WINDOWS_POD = ("(has(variables.podSpec.os) && has(variables.podSpec.os.name) && "
               "variables.podSpec.os.name == 'windows')")


@dataclass(frozen=True, slots=True)
class CelControl:
    """One control as CEL: ``expression`` is true when the object passes."""

    name: str
    expression: str
    message_expression: str
    message: str
    offenders: str | None  # names of failing containers (None for pod-level controls)


def has(base: str, path: str) -> str:
    """``has(c.a) && has(c.a.b)``: each level guarded (a missing parent must not raise)."""
    parts = path.split(".")
    return " && ".join(f"has({base}.{'.'.join(parts[: i + 1])})" for i in range(len(parts)))


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _raw(regex: str) -> str:
    if "'" in regex:
        raise ValueError(f"regex {regex!r} contains a quote")
    return f"r'{regex}'"


def _list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(_quote(i) for i in items) + "]"


def _is_true(base: str, path: str) -> str:
    return f"({has(base, path)} && {base}.{path} == true)"


def _exempt(images: tuple[str, ...]) -> str | None:
    tests = [
        f"c.image.startsWith({_quote(i[:-1])})" if i.endswith("*") else f"c.image == {_quote(i)}"
        for i in images
    ]
    return f"(has(c.image) && ({' || '.join(tests)}))" if tests else None


# --- container predicates: CEL over `c` (a container) and variables.podSpec -----------------

def _registries(policy: Policy, _: Control) -> str:
    rules = img.registry_rules(policy.spec.registries)
    terms = [f"(c.image.startsWith({_quote(r.lead)}) && c.image.matches({_raw(r.lower)}))"
             for r in rules if r.lead and r.lower]
    upper = [f"c.image.matches({_raw(r.include)})" for r in rules if r.lead]
    if upper:
        terms.append(f"(c.image.matches({_raw(img.UPPER_REGISTRY)}) && ({' || '.join(upper)}))")
    for r in rules:
        if not r.lead:
            term = f"c.image.matches({_raw(r.include)})"
            terms.append(f"({term} && !c.image.matches({_raw(r.exclude)}))" if r.exclude else term)
    digest = f"(!c.image.contains('@') || c.image.matches({_raw(img.DIGEST_OK)}))"
    long_tag = f"(size(c.image) < {img.LONG_TAG_MIN} || !c.image.matches({_raw(img.LONG_TAG)}))"
    return f"has(c.image) && ({' || '.join(terms) or 'false'}) && {digest} && {long_tag}"


def _tags(_: Policy, ctl: Control) -> str:
    assert isinstance(ctl, Tags)
    terms = ["has(c.image)"]
    terms += [f"!c.image.endsWith({_quote(':' + t)})" for t in ctl.disallowed]
    terms += [f"!c.image.contains({_quote(':' + t + '@')})" for t in ctl.disallowed]
    if ctl.require:
        terms.append(f"!c.image.matches({_raw(img.UNTAGGED)})")
    return " && ".join(terms)


def _digest(_: Policy, __: Control) -> str:
    return f"has(c.image) && c.image.matches({_raw(img.PINNED)})"


def _privileged(_: Policy, __: Control) -> str:
    return "!" + _is_true("c", "securityContext.privileged")


def _privilege_escalation(_: Policy, __: Control) -> str:
    path = "securityContext.allowPrivilegeEscalation"
    return f"{has('c', path)} && c.{path} == false"


def _capabilities(_: Policy, ctl: Control) -> str:
    assert isinstance(ctl, Capabilities)
    add = "securityContext.capabilities.add"
    out = f"(!({has('c', add)}) || c.{add}.all(a, a in {_list(ctl.allowed)}))"
    if ctl.require_drop_all:
        drop = "securityContext.capabilities.drop"
        out += f" && {has('c', drop)} && c.{drop}.exists(d, d == 'ALL')"
    return out


def _inherited(field: str, test: Callable[[str], str], default: str) -> str:
    """Container's own securityContext value if set, else the pod's, else ``default``."""
    c, p = f"securityContext.{field}", "variables.podSpec"
    return (f"({has('c', c)} ? {test('c.' + c)} : "
            f"({has(p, c)} ? {test(p + '.' + c)} : {default}))")


def _run_as_non_root(_: Policy, __: Control) -> str:
    non_root = _inherited("runAsNonRoot", lambda v: f"{v} == true", "false")
    not_zero = _inherited("runAsUser", lambda v: f"{v} != 0", "true")
    return f"{non_root} && {not_zero}"


def _seccomp(_: Policy, ctl: Control) -> str:
    assert isinstance(ctl, Seccomp)
    allowed = _list(ctl.profiles)
    return _inherited("seccompProfile", lambda v: f"(has({v}.type) && {v}.type in {allowed})",
                      "false")


def _read_only(_: Policy, __: Control) -> str:
    return _is_true("c", "securityContext.readOnlyRootFilesystem")


def _limits(_: Policy, ctl: Control) -> str:
    assert isinstance(ctl, Limits)
    keys = " && ".join(f"{_quote(r)} in c.resources.limits" for r in ctl.resources)
    return f"{has('c', 'resources.limits')} && {keys}"


# --- pod predicates: CEL over variables.podSpec -----------------------------------------------

_S = "variables.podSpec"


def _host_namespaces(_: Policy, __: Control) -> str:
    return f"!{_is_true(_S, 'hostPID')} && !{_is_true(_S, 'hostIPC')}"


def _host_network(_: Policy, __: Control) -> str:
    return f"!{_is_true(_S, 'hostNetwork')}"


def _host_path(_: Policy, __: Control) -> str:
    return f"!has({_S}.volumes) || {_S}.volumes.all(v, !has(v.hostPath))"


def _automount(_: Policy, __: Control) -> str:
    return f"has({_S}.automountServiceAccountToken) && {_S}.automountServiceAccountToken == false"


Predicate = Callable[[Policy, Control], str]
# name -> (predicate, containers variable or None for pod-level, what a violation means)
CONTROLS: dict[str, tuple[Predicate, str | None, str]] = {
    "registries": (_registries, "allContainers", "uses an image outside the approved registries"),
    "tags": (_tags, "allContainers", "uses a mutable or missing image tag (pin a version)"),
    "digest": (_digest, "allContainers", "must pin its image by digest (@sha256:...)"),
    "privileged": (_privileged, "allContainers", "must not be privileged"),
    "privilege_escalation": (_privilege_escalation, "allContainers",
                             "must set securityContext.allowPrivilegeEscalation: false"),
    "host_namespaces": (_host_namespaces, None, "must not share the host PID or IPC namespace"),
    "host_network": (_host_network, None, "must not use the host network"),
    "host_path": (_host_path, None, "must not mount hostPath volumes"),
    "capabilities": (_capabilities, "allContainers",
                     "must drop ALL capabilities and add only allowed ones"),
    "run_as_non_root": (_run_as_non_root, "allContainers",
                        "must run as non-root (runAsNonRoot: true, runAsUser not 0)"),
    "seccomp": (_seccomp, "allContainers", "must use an allowed seccomp profile"),
    "read_only_root_filesystem": (_read_only, "allContainers",
                                  "must set securityContext.readOnlyRootFilesystem: true"),
    "automount_token": (_automount, None,
                        "must set automountServiceAccountToken: false on the pod"),
    "limits": (_limits, "limitContainers", "must set resource limits"),
}


def _container_list(var: str) -> str:
    if var == "limitContainers":  # ephemeral containers cannot have resources
        return "(variables.containers + variables.initContainers)"
    return f"variables.{var}"


def compile_control(policy: Policy, name: str, ctl: Control) -> CelControl:
    fn, var, text = CONTROLS[name]
    pred = fn(policy, ctl)
    if isinstance(ctl, ContainerControl) and (ex := _exempt(ctl.exempt_images)):
        pred = f"{ex} || ({pred})"
    guard = "" if name in IMAGE_CONTROLS else "variables.podUpdate || "
    if name in pss.LINUX_ONLY and policy.spec.admission.pod_security is not None:
        guard += f"{WINDOWS_POD} || "
    if var is None:
        expr = f"{guard}({pred})"
        return CelControl(name, expr, _quote(f"{name}: the pod {text}"), f"{name}: pod {text}",
                          None)
    items = _container_list(var)
    # the failing containers' names in one loop (the three-argument map filters and maps)
    names = f"{items}.map(c, !({pred}), c.name)"
    message = f"{_quote(name + ': container ')} + {names}[0] + {_quote(' ' + text)}"
    if name in IMAGE_CONTROLS:
        message += f" + ' (' + ({items}.filter(c, !({pred}))[0].image) + ')'"
    return CelControl(name, f"{guard}{items}.all(c, {pred})", message,
                      f"{name}: a container {text}", names)


def pss_control(policy: Policy, check: pss.Check) -> CelControl:
    """One Pod Security Standards check; its message starts with the standard's check ID."""
    setting = policy.spec.admission.pod_security
    assert setting is not None
    at = pss.minor(setting.version)
    pod, container = pss.cel_pieces(check, at)
    terms = [t for t in (pod, f"variables.allContainers.all(c, {container})" if container
                         else None) if t]
    exempt = pss.cel_exemption(check, at)
    expr = "variables.podUpdate || " + (f"{exempt} || " if exempt else "") + " && ".join(terms)
    head = pss.message(check, setting)
    if container is None:
        return CelControl(pss.control_name(check), expr,
                          _quote(f"{head}: the pod {check.text}"), f"{head}: {check.text}", None)
    # one loop each (the three-argument map filters and maps in one pass): the first failing
    # container's name, else the pod (its pod-level part failed)
    named = f"variables.allContainers.map(c, !({container}), 'container ' + c.name)"
    message = (f"{_quote(head + ': ')} + ({named} + ['the pod'])[0] + "
               f"{_quote(' ' + check.text)}")
    return CelControl(pss.control_name(check), expr, message, f"{head}: {check.text}",
                      f"variables.allContainers.map(c, !({container}), c.name)")


def pss_checks(policy: Policy) -> tuple[pss.Check, ...]:
    """The Pod Security Standards checks ``spec.admission.pod_security`` turns on (or none)."""
    setting = policy.spec.admission.pod_security
    return () if setting is None else pss.active(setting.level, pss.minor(setting.version))


def own_controls(policy: Policy) -> dict[str, Control]:
    """corral's enabled controls, less those a Pod Security level implies (compiled once, under
    the standard's check ID)."""
    controls = policy.spec.admission.controls
    enabled, setting = controls.enabled(), policy.spec.admission.pod_security
    if setting is None:
        return enabled
    skip = pss.implied(setting.level, pss.minor(setting.version), controls.seccomp.profiles,
                       controls.capabilities.allowed)
    return {n: c for n, c in enabled.items() if n not in skip}


def cel_controls(policy: Policy) -> tuple[CelControl, ...]:
    """Every enabled control of ``spec.admission``, in declaration order, then the Pod Security
    Standards checks."""
    own = tuple(compile_control(policy, n, c) for n, c in own_controls(policy).items())
    return own + tuple(pss_control(policy, c) for c in pss_checks(policy))


def variables(policy: Policy) -> tuple[tuple[str, str], ...]:
    """The VAP's shared variables (the pod's annotations only when a Pod Security level reads
    them)."""
    if policy.spec.admission.pod_security is None:
        return VARIABLES
    return (*VARIABLES, pss.ANNOTATIONS_VARIABLE, *pss.INHERITED_VARIABLES)


def policy_name(policy: Policy) -> str:
    return f"corral-{policy.metadata.name}"


def match_constraints(policy: Policy) -> dict[str, Any]:
    return {
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": policy.spec.namespace}
        },
        "resourceRules": [
            {"apiGroups": [group], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": list(resources)}
            for group, resources in RESOURCES
        ],
    }


def _metadata(policy: Policy) -> dict[str, Any]:
    return {"name": policy_name(policy), "labels": {"app.kubernetes.io/managed-by": "corral"}}


def vap(policy: Policy) -> dict[str, Any]:
    """The ValidatingAdmissionPolicy object (also what ``corral check`` evaluates)."""
    return {
        "apiVersion": VAP_API,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _metadata(policy),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": match_constraints(policy),
            "variables": [{"name": n, "expression": e} for n, e in variables(policy)],
            "validations": [
                {"expression": c.expression, "messageExpression": c.message_expression,
                 "message": c.message, "reason": "Forbidden"}
                for c in cel_controls(policy)
            ],
        },
    }


def binding(policy: Policy) -> dict[str, Any]:
    ns = policy.spec.namespace
    return {
        "apiVersion": VAP_API,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _metadata(policy),
        "spec": {
            "policyName": policy_name(policy),
            "validationActions": [ACTIONS[policy.spec.admission.action]],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}
            },
        },
    }


def compile_vap(policy: Policy) -> Files:
    """Target ``admission-vap``: nothing when the policy does not select the ``cel`` engine."""
    if "cel" not in policy.spec.admission.engines:
        return {}
    return {"validating-admission-policy.yaml": manifest(vap(policy), binding(policy))}
