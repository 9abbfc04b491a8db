"""``spec.admission.pod_security`` -> the Kubernetes Pod Security Standards' checks. Pure.

The standards are the pod-security-admission policy package: a registry of checks, each with an
ID, a level and the policy versions at which its behaviour changes. Restricted is every baseline
check plus the restricted ones, minus the baseline checks a restricted check overrides *at that
version* (``seccompProfile_restricted`` replaces ``seccompProfile_baseline`` only from v1.19, so a
v1.18 restricted policy still runs the baseline annotation check). A version above the newest
one corral knows, and ``latest``, resolve to that newest one (``MAX_MINOR``), as the admission
plugin clamps to its registry's newest version.

This module holds the table and the semantics, and writes each active check as CEL (pieces that
``admission_cel`` wraps into validations); ``admission_pss_rego`` writes the same checks as Rego
v1, with the version-dependent values (``parameters``) as Constraint parameters. Every check
covers containers, init containers and ephemeral containers, as the upstream visitor does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corral.model.admission import PodSecurity

MAX_MINOR = 37  # the newest policy version with a check revision (sysctls, v1.37)

BASELINE_CAPABILITIES = ("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                         "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID",
                         "SYS_CHROOT")
# (first policy minor, sysctls that became safe then)
SYSCTLS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
         "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start")),
    (27, ("net.ipv4.ip_local_reserved_ports",)),
    (29, ("net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
          "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes")),
    (32, ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")),
    (37, ("net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat")),
)
SELINUX_TYPES: tuple[tuple[int, tuple[str, ...]], ...] = (
    (0, ("", "container_t", "container_init_t", "container_kvm_t")),
    (31, ("container_engine_t",)),
)
# `image` was added to the v1.0 function itself (Kubernetes 1.33): allowed at every version.
VOLUMES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
           "persistentVolumeClaim", "projected", "secret")
APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
SECCOMP_POD = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"
# the annotation keys any check reads (``corral check`` keeps only these)
ANNOTATION_PREFIXES = (APPARMOR_PREFIX, SECCOMP_POD, SECCOMP_PREFIX)
PROFILE_TYPES = ("RuntimeDefault", "Localhost")
# corral's own controls that every level implies (same rule or weaker): compiled once, as the check
SUBSUMED = {"privileged": "privileged", "host_namespaces": "hostNamespaces",
            "host_network": "hostNamespaces", "host_path": "hostPathVolumes"}
# corral's controls of Linux-only fields (the API refuses them on Windows pods): with a level
# set they exempt Windows pods as the standard's own checks do
LINUX_ONLY = frozenset({"privilege_escalation", "capabilities", "seccomp"})


@dataclass(frozen=True, slots=True)
class Check:
    """One check of the standard: ``since`` is its first policy minor version."""

    id: str
    level: str
    since: int
    text: str
    overrides: tuple[str, ...] = ()
    windows_exempt_from: int | None = None  # Linux-only from this version: skip Windows pods
    host_users_relax_from: int | None = None  # skipped for pods with hostUsers: false


CHECKS: tuple[Check, ...] = (
    Check("windowsHostProcess", "baseline", 0, "must not run Windows HostProcess containers"),
    Check("hostNamespaces", "baseline", 0, "must not share the host network, PID or IPC"),
    Check("privileged", "baseline", 0, "must not be privileged"),
    Check("capabilities_baseline", "baseline", 0,
          "must not add capabilities beyond the baseline set"),
    Check("hostPathVolumes", "baseline", 0, "must not use hostPath volumes"),
    Check("hostPorts", "baseline", 0, "must not use host ports"),
    Check("appArmorProfile", "baseline", 0,
          "must not set an AppArmor profile other than RuntimeDefault or Localhost"),
    Check("seLinuxOptions", "baseline", 0,
          "must not set a custom SELinux type, user or role"),
    Check("procMount", "baseline", 0, "must not set a procMount other than Default",
          host_users_relax_from=35),
    Check("seccompProfile_baseline", "baseline", 0,
          "must not set the seccomp profile to Unconfined"),
    Check("sysctls", "baseline", 0, "must set only safe sysctls"),
    Check("hostProbesAndHostLifecycle", "baseline", 34,
          "must not set a host in probes or lifecycle handlers"),
    Check("restrictedVolumes", "restricted", 0,
          "must use only configMap, csi, downwardAPI, emptyDir, ephemeral, image, "
          "persistentVolumeClaim, projected and secret volumes", overrides=("hostPathVolumes",)),
    Check("allowPrivilegeEscalation", "restricted", 8,
          "must set securityContext.allowPrivilegeEscalation=false", windows_exempt_from=25),
    Check("runAsNonRoot", "restricted", 0, "must set securityContext.runAsNonRoot=true",
          host_users_relax_from=35),
    Check("runAsUser", "restricted", 23, "must not set runAsUser=0", host_users_relax_from=35),
    Check("seccompProfile_restricted", "restricted", 19,
          "must set securityContext.seccompProfile.type to RuntimeDefault or Localhost",
          overrides=("seccompProfile_baseline",), windows_exempt_from=25),
    Check("capabilities_restricted", "restricted", 22,
          "must drop ALL capabilities and add only NET_BIND_SERVICE",
          overrides=("capabilities_baseline",), windows_exempt_from=25),
    Check("procMount_restricted", "restricted", 35, "must not set a procMount other than Default",
          overrides=("procMount",)),
)
BY_ID = {c.id: c for c in CHECKS}


def minor(version: str) -> int:
    """``v1.N`` -> N, clamped to the newest version corral knows; ``latest`` -> that version."""
    return MAX_MINOR if version == "latest" else min(int(version.split(".")[1]), MAX_MINOR)


def active(level: str, at: int) -> tuple[Check, ...]:
    """The checks a ``level`` policy runs at policy minor version ``at``, in table order."""
    checks = [c for c in CHECKS
              if c.since <= at and (c.level == "baseline" or level == "restricted")]
    overridden = {o for c in checks if c.level == "restricted" for o in c.overrides}
    return tuple(c for c in checks if c.id not in overridden)


def implied(level: str, at: int, profiles: tuple[str, ...], allowed_caps: tuple[str, ...]
            ) -> frozenset[str]:
    """corral's controls whose every refusal the level at version ``at`` also makes (the check
    is the same rule or stricter; ``exempt_images`` only loosens a control, so it never
    matters). ``profiles`` and ``allowed_caps`` are the ``seccomp`` and ``capabilities``
    settings: the restricted checks imply those controls only when the settings are at least as
    loose as the standard."""
    out = set(SUBSUMED)
    if level == "restricted":
        if at >= 8:  # allowPrivilegeEscalation; corral's exempts Windows pods like it from 1.25
            out.add("privilege_escalation")
        if at >= 19 and set(PROFILE_TYPES) <= set(profiles):
            out.add("seccomp")
        if at >= 22 and "NET_BIND_SERVICE" in allowed_caps:
            out.add("capabilities")
        if 23 <= at < 35:  # runAsNonRoot + runAsUser, before the user-namespace relaxation
            out.add("run_as_non_root")
    return frozenset(out)


def _since(table: tuple[tuple[int, tuple[str, ...]], ...], at: int) -> tuple[str, ...]:
    return tuple(item for first, items in table if first <= at for item in items)


def control_name(check: Check) -> str:
    return f"pss_{check.id}"


def message(check: Check, setting: PodSecurity) -> str:
    return f"{check.id} (Pod Security Standards {setting.level}:{setting.version})"


def parameters(check: Check, at: int) -> dict[str, Any]:
    """The version-dependent values of a check (Rego Constraint parameters)."""
    params: dict[str, Any] = {
        "windowsExempt": check.windows_exempt_from is not None and at >= check.windows_exempt_from,
        "hostUsersRelax": (check.host_users_relax_from is not None
                           and at >= check.host_users_relax_from),
    }
    extra: dict[str, dict[str, Any]] = {
        "capabilities_baseline": {"allowed": list(BASELINE_CAPABILITIES)},
        "seLinuxOptions": {"types": list(_since(SELINUX_TYPES, at))},
        "seccompProfile_baseline": {"fields": at >= 19},
        "sysctls": {"allowed": list(_since(SYSCTLS, at))},
        "restrictedVolumes": {"allowed": list(VOLUMES)},
    }
    return params | extra.get(check.id, {})


# --- CEL -------------------------------------------------------------------------------------

_S = "variables.podSpec"
_A = "variables.podAnnotations"

ANNOTATIONS_VARIABLE = (
    "podAnnotations",
    "object.kind == 'Pod' ? (has(object.metadata.annotations) ? object.metadata.annotations : {})"
    " : (object.kind == 'CronJob' ? (has(object.spec.jobTemplate.spec.template.metadata) && "
    "has(object.spec.jobTemplate.spec.template.metadata.annotations) ? "
    "object.spec.jobTemplate.spec.template.metadata.annotations : {}) : "
    "(has(object.spec.template.metadata) && has(object.spec.template.metadata.annotations) ? "
    "object.spec.template.metadata.annotations : {}))",
)


def _has(base: str, path: str) -> str:
    parts = path.split(".")
    return "(" + " && ".join(f"has({base}.{'.'.join(parts[: i + 1])})"
                             for i in range(len(parts))) + ")"


def _set(base: str, path: str, test: str) -> str:
    """``base.path`` is set and ``test`` holds for it (``test`` formats ``{v}``)."""
    return f"({_has(base, path)} && {test.format(v=f'{base}.{path}')})"


def _unset_or(base: str, path: str, test: str) -> str:
    return f"(!{_has(base, path)} || {test.format(v=f'{base}.{path}')})"


def _lit(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _cel_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_lit(i) for i in items) + "]"


_PROFILE = "(has({v}.type) && {v}.type in " + _cel_list(PROFILE_TYPES) + ")"


def _apparmor_annotation(value: str) -> str:
    return (f"({value} == '' || {value} == 'runtime/default' || "
            f"{value}.startsWith('localhost/'))")


def _seccomp_annotation(value: str) -> str:
    return (f"({value} == 'runtime/default' || {value} == 'docker/default' || "
            f"{value}.startsWith('localhost/'))")


def _selinux(base: str, types: tuple[str, ...]) -> str:
    o = f"{base}.securityContext.seLinuxOptions"
    ok = (f"(!has({o}.type) || {o}.type in {_cel_list(types)}) && "
          f"(!has({o}.user) || {o}.user == '') && (!has({o}.role) || {o}.role == '')")
    return f"(!{_has(base, 'securityContext.seLinuxOptions')} || ({ok}))"


# what a container without its own value inherits: evaluated once per pod, not per container
POD_NON_ROOT = ("podRunAsNonRoot", _set(_S, "securityContext.runAsNonRoot", "{v} == true"))
POD_SECCOMP = ("podSeccompProfile", _set(_S, "securityContext.seccompProfile", _PROFILE))
INHERITED_VARIABLES = (POD_NON_ROOT, POD_SECCOMP)

Pieces = tuple[str | None, str | None]  # (pod predicate, container predicate over `c`)
_SC = "securityContext"


def _windows_host_process(_: int) -> Pieces:
    path = f"{_SC}.windowsOptions.hostProcess"
    return f"!{_set(_S, path, '{v} == true')}", f"!{_set('c', path, '{v} == true')}"


def _host_namespaces(_: int) -> Pieces:
    return " && ".join(f"!{_set(_S, f, '{v} == true')}"
                       for f in ("hostNetwork", "hostPID", "hostIPC")), None


def _privileged(_: int) -> Pieces:
    return None, f"!{_set('c', f'{_SC}.privileged', '{v} == true')}"


def _capabilities_baseline(_: int) -> Pieces:
    allowed = _cel_list(BASELINE_CAPABILITIES)
    return None, _unset_or("c", f"{_SC}.capabilities.add", f"{{v}}.all(a, a in {allowed})")


def _host_path_volumes(_: int) -> Pieces:
    return f"(!has({_S}.volumes) || {_S}.volumes.all(v, !has(v.hostPath)))", None


def _host_ports(_: int) -> Pieces:
    return None, "(!has(c.ports) || c.ports.all(p, !has(p.hostPort) || p.hostPort == 0))"


def _app_armor(_: int) -> Pieces:
    annotations = (f"{_A}.all(k, !k.startsWith({_lit(APPARMOR_PREFIX)}) || "
                   f"{_apparmor_annotation(f'{_A}[k]')})")
    field = f"{_SC}.appArmorProfile"
    return (f"{annotations} && {_unset_or(_S, field, _PROFILE)}",
            _unset_or("c", field, _PROFILE))


def _se_linux(at: int) -> Pieces:
    types = _since(SELINUX_TYPES, at)
    return _selinux(_S, types), _selinux("c", types)


def _proc_mount(_: int) -> Pieces:
    return None, _unset_or("c", f"{_SC}.procMount", "{v} == 'Default'")


def _seccomp_baseline(at: int) -> Pieces:
    if at < 19:  # the alpha annotations, before the field existed
        pod_key, key = _lit(SECCOMP_POD), f"({_lit(SECCOMP_PREFIX)} + c.name)"
        return (f"(!({pod_key} in {_A}) || {_seccomp_annotation(f'{_A}[{pod_key}]')})",
                f"(!({key} in {_A}) || {_seccomp_annotation(f'{_A}[{key}]')})")
    field = f"{_SC}.seccompProfile"
    return _unset_or(_S, field, _PROFILE), _unset_or("c", field, _PROFILE)


def _sysctls(at: int) -> Pieces:
    allowed = _cel_list(_since(SYSCTLS, at))
    return _unset_or(_S, f"{_SC}.sysctls",
                     f"{{v}}.all(s, has(s.name) && s.name in {allowed})"), None


def _probe_hosts(_: int) -> Pieces:
    paths = [f"{p}.{h}.host" for p in ("livenessProbe", "readinessProbe", "startupProbe")
             for h in ("httpGet", "tcpSocket")]
    paths += [f"lifecycle.{p}.{h}.host" for p in ("postStart", "preStop")
              for h in ("httpGet", "tcpSocket")]
    # most containers set none of these fields: test that first, in four steps
    absent = " && ".join(f"!has(c.{f})"
                         for f in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle"))
    each = " && ".join(_unset_or("c", p, "{v} == ''") for p in paths)
    return None, f"(({absent}) || ({each}))"


def _restricted_volumes(_: int) -> Pieces:
    kinds = " || ".join(f"has(v.{k})" for k in VOLUMES)
    return f"(!has({_S}.volumes) || {_S}.volumes.all(v, {kinds}))", None


def _privilege_escalation(_: int) -> Pieces:
    return None, _set("c", f"{_SC}.allowPrivilegeEscalation", "{v} == false")


def _run_as_non_root(_: int) -> Pieces:
    field = f"{_SC}.runAsNonRoot"
    return (f"!{_set(_S, field, '{v} == false')}",
            f"({_has('c', field)} ? c.{field} == true : variables.{POD_NON_ROOT[0]})")


def _run_as_user(_: int) -> Pieces:
    field = f"{_SC}.runAsUser"
    return f"!{_set(_S, field, '{v} == 0')}", f"!{_set('c', field, '{v} == 0')}"


def _seccomp_restricted(_: int) -> Pieces:
    field = f"{_SC}.seccompProfile"
    return (_unset_or(_S, field, _PROFILE),
            f"({_has('c', field)} ? {_PROFILE.format(v='c.' + field)} : "
            f"variables.{POD_SECCOMP[0]})")


def _capabilities_restricted(_: int) -> Pieces:
    drop = _set("c", f"{_SC}.capabilities.drop", "{v}.exists(d, d == 'ALL')")
    add = _unset_or("c", f"{_SC}.capabilities.add", "{v}.all(a, a == 'NET_BIND_SERVICE')")
    return None, f"{drop} && {add}"


_CEL: dict[str, Callable[[int], Pieces]] = {
    "windowsHostProcess": _windows_host_process,
    "hostNamespaces": _host_namespaces,
    "privileged": _privileged,
    "capabilities_baseline": _capabilities_baseline,
    "hostPathVolumes": _host_path_volumes,
    "hostPorts": _host_ports,
    "appArmorProfile": _app_armor,
    "seLinuxOptions": _se_linux,
    "procMount": _proc_mount,
    "seccompProfile_baseline": _seccomp_baseline,
    "sysctls": _sysctls,
    "hostProbesAndHostLifecycle": _probe_hosts,
    "restrictedVolumes": _restricted_volumes,
    "allowPrivilegeEscalation": _privilege_escalation,
    "runAsNonRoot": _run_as_non_root,
    "runAsUser": _run_as_user,
    "seccompProfile_restricted": _seccomp_restricted,
    "capabilities_restricted": _capabilities_restricted,
    "procMount_restricted": _proc_mount,
}


def cel_pieces(check: Check, at: int) -> Pieces:
    """(pod predicate, container predicate over ``c``): CEL true when the object passes."""
    return _CEL[check.id](at)


def cel_exemption(check: Check, at: int) -> str | None:
    """CEL true when the standard exempts the whole pod from ``check`` at version ``at``."""
    terms = []
    if check.windows_exempt_from is not None and at >= check.windows_exempt_from:
        terms.append(_set(_S, "os.name", "{v} == 'windows'"))
    if check.host_users_relax_from is not None and at >= check.host_users_relax_from:
        terms.append(_set(_S, "hostUsers", "{v} == false"))
    return " || ".join(terms) or None
