"""The Pod Security Standards' checks (``admission_pss``) as Rego v1 modules. Pure.

``admission_rego`` puts each after its shared library (pod spec, container lists, ``pod_update``,
``has_key``, ``is_true``, ``name_of``) in a ConstraintTemplate; the values that change with the
policy version (sysctl and SELinux lists, the Windows and user-namespace exemptions, seccomp
annotations or fields) come from ``admission_pss.parameters`` as Constraint parameters, so a
template's Rego never changes with the version. Same constructs as ``admission_rego``: helper
rules, ``object.get`` defaults, no ``f(x[_])``, ``%s`` in ``sprintf``.
"""

from __future__ import annotations

from corral.compile.admission_pss import Check

REGO_LIB = """
pod_meta := obj.metadata if obj.kind == "Pod"

pod_meta := object.get(obj.spec.jobTemplate.spec.template, "metadata", {}) if obj.kind == "CronJob"

pod_meta := object.get(obj.spec.template, "metadata", {}) if not obj.kind in {"Pod", "CronJob"}

annotations := object.get(pod_meta, "annotations", {})

pod_sc := object.get(pod_spec, "securityContext", {})

sc(c) := object.get(c, "securityContext", {})

exempt_pod if {
	input.parameters.windowsExempt == true
	pod_spec.os.name == "windows"
}

exempt_pod if {
	input.parameters.hostUsersRelax == true
	has_key(pod_spec, "hostUsers")
	pod_spec.hostUsers == false
}

profile_ok(p) if object.get(p, "type", "") in {"RuntimeDefault", "Localhost"}
"""

REGO_POD_RULE = """
violation contains {"msg": msg} if {
	not pod_update
	not exempt_pod
	pod_bad
	msg := sprintf("%s: the pod %s", [control, text])
}
"""

REGO_CONTAINER_RULE = """
violation contains {"msg": msg} if {
	not pod_update
	not exempt_pod
	some c in all_containers
	not ok(c)
	msg := sprintf("%s: container %s %s", [control, name_of(c), text])
}
"""

_SECCOMP_FIELDS = """
seccomp_set_bad(s) if {
	has_key(s, "seccompProfile")
	not profile_ok(s.seccompProfile)
}
"""

_REGO: dict[str, tuple[str | None, str | None, str]] = {
    # id -> (pod_bad body, ok(c) body, helper rules)
    "windowsHostProcess": (
        'is_true(object.get(pod_sc, "windowsOptions", {}), "hostProcess")',
        'not is_true(object.get(sc(c), "windowsOptions", {}), "hostProcess")', ""),
    "hostNamespaces": ("host_namespace", None, """
host_namespace if is_true(pod_spec, "hostNetwork")

host_namespace if is_true(pod_spec, "hostPID")

host_namespace if is_true(pod_spec, "hostIPC")
"""),
    "privileged": (None, 'not is_true(sc(c), "privileged")', ""),
    "capabilities_baseline": (None, "adds_ok(c)", """
adds_ok(c) if {
	caps := object.get(sc(c), "capabilities", {})
	every a in object.get(caps, "add", []) {
		a in input.parameters.allowed
	}
}
"""),
    "hostPathVolumes": ("host_path", None, """
host_path if {
	some v in object.get(pod_spec, "volumes", [])
	has_key(v, "hostPath")
}
"""),
    "hostPorts": (None, "not host_port(c)", """
host_port(c) if {
	some p in object.get(c, "ports", [])
	object.get(p, "hostPort", 0) != 0
}
"""),
    "appArmorProfile": ("apparmor_pod_bad", "not apparmor_bad(c)", """
apparmor_pod_bad if {
	some k, v in annotations
	startswith(k, "container.apparmor.security.beta.kubernetes.io/")
	not annotation_ok(v)
}

apparmor_pod_bad if apparmor_set_bad(pod_sc)

apparmor_bad(c) if apparmor_set_bad(sc(c))

apparmor_set_bad(s) if {
	has_key(s, "appArmorProfile")
	not profile_ok(s.appArmorProfile)
}

annotation_ok(v) if v == ""

annotation_ok(v) if v == "runtime/default"

annotation_ok(v) if startswith(v, "localhost/")
"""),
    "seLinuxOptions": ("selinux_bad(pod_sc)", "not selinux_bad(sc(c))", """
selinux_bad(s) if {
	has_key(s, "seLinuxOptions")
	not selinux_ok(s.seLinuxOptions)
}

selinux_ok(o) if {
	object.get(o, "type", "") in input.parameters.types
	object.get(o, "user", "") == ""
	object.get(o, "role", "") == ""
}
"""),
    "procMount": (None, 'object.get(sc(c), "procMount", "Default") == "Default"', ""),
    "seccompProfile_baseline": ("seccomp_pod_bad", "not seccomp_bad(c)", _SECCOMP_FIELDS + """
seccomp_pod_bad if {
	input.parameters.fields == true
	seccomp_set_bad(pod_sc)
}

seccomp_pod_bad if {
	input.parameters.fields == false
	some k, v in annotations
	k == "seccomp.security.alpha.kubernetes.io/pod"
	not seccomp_annotation_ok(v)
}

seccomp_bad(c) if {
	input.parameters.fields == true
	seccomp_set_bad(sc(c))
}

seccomp_bad(c) if {
	input.parameters.fields == false
	key := concat("", ["container.seccomp.security.alpha.kubernetes.io/", c.name])
	some k, v in annotations
	k == key
	not seccomp_annotation_ok(v)
}

seccomp_annotation_ok(v) if v == "runtime/default"

seccomp_annotation_ok(v) if v == "docker/default"

seccomp_annotation_ok(v) if startswith(v, "localhost/")
"""),
    "sysctls": ("unsafe_sysctl", None, """
unsafe_sysctl if {
	some s in object.get(pod_sc, "sysctls", [])
	n := object.get(s, "name", "")
	not n in input.parameters.allowed
}
"""),
    "hostProbesAndHostLifecycle": (None, "not probe_host(c)", """
probe_host(c) if {
	some p in ["livenessProbe", "readinessProbe", "startupProbe"]
	some h in ["httpGet", "tcpSocket"]
	object.get(object.get(object.get(c, p, {}), h, {}), "host", "") != ""
}

probe_host(c) if {
	some p in ["postStart", "preStop"]
	some h in ["httpGet", "tcpSocket"]
	handler := object.get(object.get(c, "lifecycle", {}), p, {})
	object.get(object.get(handler, h, {}), "host", "") != ""
}
"""),
    "restrictedVolumes": ("bad_volume", None, """
bad_volume if {
	some v in object.get(pod_spec, "volumes", [])
	not allowed_volume(v)
}

allowed_volume(v) if {
	some k in input.parameters.allowed
	has_key(v, k)
}
"""),
    "allowPrivilegeEscalation": (None, "no_escalation(c)", """
no_escalation(c) if {
	s := sc(c)
	has_key(s, "allowPrivilegeEscalation")
	s.allowPrivilegeEscalation == false
}
"""),
    "runAsNonRoot": ("pod_root_allowed", "non_root(c)", """
pod_root_allowed if {
	has_key(pod_sc, "runAsNonRoot")
	pod_sc.runAsNonRoot == false
}

non_root(c) if {
	s := sc(c)
	has_key(s, "runAsNonRoot")
	s.runAsNonRoot == true
}

non_root(c) if {
	not has_key(sc(c), "runAsNonRoot")
	is_true(pod_sc, "runAsNonRoot")
}
"""),
    "runAsUser": ("root_user(pod_sc)", "not root_user(sc(c))", """
root_user(s) if {
	has_key(s, "runAsUser")
	s.runAsUser == 0
}
"""),
    "seccompProfile_restricted": ("seccomp_set_bad(pod_sc)", "seccomp_ok(c)", _SECCOMP_FIELDS + """
seccomp_ok(c) if {
	s := sc(c)
	has_key(s, "seccompProfile")
	profile_ok(s.seccompProfile)
}

seccomp_ok(c) if {
	not has_key(sc(c), "seccompProfile")
	has_key(pod_sc, "seccompProfile")
	profile_ok(pod_sc.seccompProfile)
}
"""),
    "capabilities_restricted": (None, "caps_ok(c)", """
caps_ok(c) if {
	caps := object.get(sc(c), "capabilities", {})
	"ALL" in object.get(caps, "drop", [])
	every a in object.get(caps, "add", []) {
		a == "NET_BIND_SERVICE"
	}
}
"""),
}
_REGO["procMount_restricted"] = _REGO["procMount"]


def rego_body(check: Check) -> str:
    """The check's rules (after the shared library): violations, predicates, helpers."""
    pod, container, helpers = _REGO[check.id]
    out = f'\ntext := "{check.text}"\n' + REGO_LIB
    if pod is not None:
        out += REGO_POD_RULE + f"\npod_bad if {pod}\n"
    if container is not None:
        out += REGO_CONTAINER_RULE + f"\nok(c) if {container}\n"
    return out + helpers
