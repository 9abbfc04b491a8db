"""Pod Security Standards cases of our own: for every check of both levels, resources that violate
it and resources that comply, at the policy versions where its behaviour changes. Shared by the
engine tests (CEL, Rego, ``corral check``)."""

from __future__ import annotations

import copy
import functools
import zlib
from dataclasses import dataclass, field
from typing import Any

from corral.check.engine import Checker
from corral.model.policy import Policy
from tests.admission.helpers import GOOD_CONTAINER, NS, make_policy, only
from tests.admission.rego_runner import RegoEngine


@functools.cache
def pss_policy(level: str, version: str = "latest") -> Policy:
    """Only the Pod Security Standards, nothing of corral's own controls."""
    return make_policy(only() | {"pod_security": {"level": level, "version": version}})


@functools.cache
def engines(level: str, version: str = "latest") -> tuple[Checker, RegoEngine]:
    policy = pss_policy(level, version)
    return Checker(policy), RegoEngine(policy)


def _set(target: dict[str, Any], changes: dict[str, Any]) -> None:
    """Apply ``changes``; a value of None removes the key."""
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(value)


@dataclass(frozen=True)
class Shape:
    """A restricted-compliant pod, changed: pod fields, pod securityContext, one container's
    fields and securityContext (the container sits in ``where``), pod annotations."""

    pod: dict[str, Any] = field(default_factory=dict)
    pod_sc: dict[str, Any] = field(default_factory=dict)
    c: dict[str, Any] = field(default_factory=dict)
    c_sc: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    where: str = "containers"

    def spec(self) -> dict[str, Any]:
        main = copy.deepcopy(GOOD_CONTAINER)
        changed = copy.deepcopy(GOOD_CONTAINER) | {"name": "sub"}
        _set(changed["securityContext"], self.c_sc)
        _set(changed, self.c)
        if self.where == "ephemeralContainers":
            changed.pop("resources")
        spec: dict[str, Any] = {"containers": [main]}
        spec[self.where] = [*spec.get(self.where, []), changed]
        if self.pod_sc:
            spec["securityContext"] = {}
            _set(spec["securityContext"], self.pod_sc)
        _set(spec, self.pod)
        return spec

    def pod_object(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": "p", "namespace": NS}
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": self.spec()}


@dataclass(frozen=True)
class Case:
    check: str
    level: str
    version: str
    shape: Shape
    fires: bool

    @property
    def id(self) -> str:
        verdict = "violates" if self.fires else "complies"
        tag = zlib.crc32(repr(self.shape).encode()) & 0xFFFF  # stable across runs
        return f"{self.check}-{self.level}-{self.version}-{verdict}-{tag:04x}"


def _cases(check: str, level: str, version: str, fires: bool, *shapes: Shape) -> list[Case]:
    return [Case(check, level, version, s, fires) for s in shapes]


R, B, L = "restricted", "baseline", "latest"
UNMASKED = Shape(c_sc={"procMount": "Unmasked"})
WINDOWS = {"os": {"name": "windows"}}

CASES: list[Case] = [
    # --- baseline -----------------------------------------------------------------------------
    *_cases("windowsHostProcess", R, L, True,
            Shape(pod_sc={"windowsOptions": {"hostProcess": True}}),
            Shape(c_sc={"windowsOptions": {"hostProcess": True}}, where="initContainers")),
    *_cases("windowsHostProcess", B, L, False,
            Shape(pod_sc={"windowsOptions": {"hostProcess": False}}),
            Shape(c_sc={"windowsOptions": {"gmsaCredentialSpecName": "x"}})),
    *_cases("hostNamespaces", B, L, True, Shape(pod={"hostNetwork": True}),
            Shape(pod={"hostPID": True}), Shape(pod={"hostIPC": True})),
    *_cases("hostNamespaces", B, L, False,
            Shape(pod={"hostNetwork": False, "hostPID": False, "hostIPC": False})),
    *_cases("privileged", B, L, True, Shape(c_sc={"privileged": True}),
            Shape(c_sc={"privileged": True}, where="ephemeralContainers")),
    *_cases("privileged", B, L, False, Shape(c_sc={"privileged": False})),
    *_cases("capabilities_baseline", B, L, True,
            Shape(c_sc={"capabilities": {"add": ["SYS_ADMIN"]}}),
            Shape(c_sc={"capabilities": {"add": ["CAP_CHOWN"]}}),
            Shape(c_sc={"capabilities": {"add": ["NET_RAW"]}}, where="initContainers")),
    # before v1.22 the restricted level still runs the baseline capabilities check
    *_cases("capabilities_baseline", R, "v1.21", True,
            Shape(c_sc={"capabilities": {"add": ["SYS_ADMIN"]}})),
    *_cases("capabilities_baseline", B, L, False,
            Shape(c_sc={"capabilities": {"add": ["CHOWN", "KILL", "SYS_CHROOT"]}}),
            Shape(c_sc={"capabilities": {"drop": ["NET_RAW"]}})),
    *_cases("hostPathVolumes", B, L, True,
            Shape(pod={"volumes": [{"name": "h", "hostPath": {"path": "/var/run"}}]})),
    *_cases("hostPathVolumes", B, L, False,
            Shape(pod={"volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]})),
    *_cases("hostPorts", B, L, True,
            Shape(c={"ports": [{"containerPort": 80, "hostPort": 8080}]}),
            Shape(c={"ports": [{"containerPort": 80, "hostPort": 8080}]},
                  where="initContainers")),
    *_cases("hostPorts", B, L, False, Shape(c={"ports": [{"containerPort": 80}]}),
            Shape(c={"ports": [{"containerPort": 80, "hostPort": 0}]})),
    *_cases("appArmorProfile", B, L, True,
            Shape(annotations={"container.apparmor.security.beta.kubernetes.io/sub":
                               "unconfined"}),
            Shape(pod_sc={"appArmorProfile": {"type": "Unconfined"}}),
            Shape(c_sc={"appArmorProfile": {"type": "Unconfined"}}, where="ephemeralContainers")),
    *_cases("appArmorProfile", B, "v1.0", True,
            Shape(c_sc={"appArmorProfile": {"type": "Unconfined"}})),
    *_cases("appArmorProfile", B, L, False,
            Shape(annotations={"container.apparmor.security.beta.kubernetes.io/sub":
                               "localhost/agent", "other.example/x": "unconfined"}),
            Shape(annotations={"container.apparmor.security.beta.kubernetes.io/sub": ""}),
            Shape(annotations={"container.apparmor.security.beta.kubernetes.io/sub":
                               "runtime/default"}),
            Shape(pod_sc={"appArmorProfile": {"type": "RuntimeDefault"}},
                  c_sc={"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}})),
    *_cases("seLinuxOptions", B, L, True,
            Shape(pod_sc={"seLinuxOptions": {"type": "spc_t"}}),
            Shape(c_sc={"seLinuxOptions": {"user": "system_u"}}),
            Shape(c_sc={"seLinuxOptions": {"role": "sysadm_r"}}, where="initContainers")),
    *_cases("seLinuxOptions", B, "v1.30", True,
            Shape(c_sc={"seLinuxOptions": {"type": "container_engine_t"}})),
    *_cases("seLinuxOptions", B, "v1.31", False,
            Shape(c_sc={"seLinuxOptions": {"type": "container_engine_t"}})),
    *_cases("seLinuxOptions", B, L, False,
            Shape(pod_sc={"seLinuxOptions": {"type": "container_init_t", "level": "s0:c1"}}),
            Shape(c_sc={"seLinuxOptions": {"type": "", "user": "", "level": "s0"}})),
    *_cases("procMount", B, L, True, UNMASKED,
            Shape(c_sc={"procMount": "Unmasked"}, where="ephemeralContainers")),
    # user namespaces relax baseline procMount from v1.35 only
    *_cases("procMount", B, "v1.34", True, Shape(pod={"hostUsers": False},
                                                 c_sc={"procMount": "Unmasked"})),
    *_cases("procMount", B, "v1.35", False, Shape(pod={"hostUsers": False},
                                                  c_sc={"procMount": "Unmasked"})),
    *_cases("procMount", R, "v1.34", True, UNMASKED),
    *_cases("procMount", B, L, False, Shape(c_sc={"procMount": "Default"})),
    *_cases("seccompProfile_baseline", B, L, True,
            Shape(pod_sc={"seccompProfile": {"type": "Unconfined"}}),
            Shape(c_sc={"seccompProfile": {"type": "Unconfined"}}, where="initContainers")),
    *_cases("seccompProfile_baseline", B, L, False, Shape(c_sc={"seccompProfile": None}),
            Shape(c_sc={"seccompProfile": {"type": "Localhost", "localhostProfile": "p"}})),
    # before v1.19: the alpha annotations, and the field is not read
    *_cases("seccompProfile_baseline", B, "v1.18", True,
            Shape(annotations={"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}),
            Shape(annotations={"container.seccomp.security.alpha.kubernetes.io/sub":
                               "unconfined"})),
    *_cases("seccompProfile_baseline", R, "v1.18", True,
            Shape(annotations={"seccomp.security.alpha.kubernetes.io/pod": "unconfined"})),
    *_cases("seccompProfile_baseline", B, "v1.18", False,
            Shape(c_sc={"seccompProfile": {"type": "Unconfined"}}),
            Shape(annotations={"seccomp.security.alpha.kubernetes.io/pod": "docker/default",
                               "container.seccomp.security.alpha.kubernetes.io/sub":
                               "localhost/x",
                               "container.seccomp.security.alpha.kubernetes.io/gone":
                               "unconfined"})),
    *_cases("sysctls", B, L, True,
            Shape(pod_sc={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]})),
    *_cases("sysctls", B, "v1.31", True,
            Shape(pod_sc={"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096"}]})),
    *_cases("sysctls", B, "v1.26", True,
            Shape(pod_sc={"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports",
                                       "value": "80"}]})),
    *_cases("sysctls", B, "v1.32", False,
            Shape(pod_sc={"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096"},
                                      {"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]})),
    *_cases("sysctls", B, "v1.27", False,
            Shape(pod_sc={"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports",
                                       "value": "80"}]})),
    *_cases("sysctls", B, L, False,
            Shape(pod_sc={"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "0"},
                                      {"name": "net.ipv4.tcp_notsent_lowat", "value": "1"}]})),
    *_cases("hostProbesAndHostLifecycle", B, L, True,
            Shape(c={"livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}}}),
            Shape(c={"readinessProbe": {"tcpSocket": {"port": 80, "host": "node"}}}),
            Shape(c={"lifecycle": {"preStop": {"httpGet": {"port": 80, "host": "x"}}}},
                  where="initContainers"),
            Shape(c={"lifecycle": {"postStart": {"tcpSocket": {"port": 80, "host": "x"}}}})),
    *_cases("hostProbesAndHostLifecycle", B, "v1.33", False,
            Shape(c={"livenessProbe": {"httpGet": {"port": 80, "host": "10.0.0.1"}}})),
    *_cases("hostProbesAndHostLifecycle", B, L, False,
            Shape(c={"startupProbe": {"httpGet": {"port": 80, "host": ""}},
                     "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}})),
    # --- restricted ---------------------------------------------------------------------------
    *_cases("restrictedVolumes", R, L, True,
            Shape(pod={"volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]}),
            Shape(pod={"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}),
            Shape(pod={"volumes": [{"name": "bare"}]})),
    *_cases("restrictedVolumes", R, L, False,
            Shape(pod={"volumes": [{"name": "c", "configMap": {"name": "x"}},
                                   {"name": "i", "image": {"reference": "r/x:1"}},
                                   {"name": "e", "emptyDir": {}},
                                   {"name": "p", "persistentVolumeClaim": {"claimName": "x"}}]})),
    *_cases("allowPrivilegeEscalation", R, L, True,
            Shape(c_sc={"allowPrivilegeEscalation": None}),
            Shape(c_sc={"allowPrivilegeEscalation": True}, where="ephemeralContainers")),
    # Windows pods are exempt from the Linux-only checks from v1.25
    *_cases("allowPrivilegeEscalation", R, "v1.24", True,
            Shape(pod=WINDOWS, c_sc={"allowPrivilegeEscalation": None})),
    *_cases("allowPrivilegeEscalation", R, "v1.25", False,
            Shape(pod=WINDOWS, c_sc={"allowPrivilegeEscalation": None})),
    *_cases("allowPrivilegeEscalation", R, "v1.7", False,
            Shape(c_sc={"allowPrivilegeEscalation": True})),
    *_cases("runAsNonRoot", R, L, True, Shape(c_sc={"runAsNonRoot": None}),
            Shape(c_sc={"runAsNonRoot": False}, where="initContainers"),
            Shape(pod_sc={"runAsNonRoot": False})),
    *_cases("runAsNonRoot", R, "v1.34", True,
            Shape(pod={"hostUsers": False}, c_sc={"runAsNonRoot": None})),
    *_cases("runAsNonRoot", R, L, False,
            Shape(pod_sc={"runAsNonRoot": True}, c_sc={"runAsNonRoot": None}),
            Shape(pod={"hostUsers": False}, c_sc={"runAsNonRoot": None})),
    *_cases("runAsUser", R, L, True, Shape(pod_sc={"runAsUser": 0}),
            Shape(c_sc={"runAsUser": 0}, where="ephemeralContainers")),
    *_cases("runAsUser", R, "v1.34", True, Shape(pod={"hostUsers": False},
                                                 c_sc={"runAsUser": 0})),
    *_cases("runAsUser", R, "v1.22", False, Shape(c_sc={"runAsUser": 0})),
    *_cases("runAsUser", R, L, False, Shape(pod_sc={"runAsUser": 1000}),
            Shape(pod={"hostUsers": False}, c_sc={"runAsUser": 0})),
    *_cases("seccompProfile_restricted", R, L, True, Shape(c_sc={"seccompProfile": None}),
            Shape(pod_sc={"seccompProfile": {"type": "RuntimeDefault"}},
                  c_sc={"seccompProfile": {"type": "Unconfined"}}),
            Shape(pod_sc={"seccompProfile": {"type": "Unconfined"}})),
    *_cases("seccompProfile_restricted", R, "v1.24", True,
            Shape(pod=WINDOWS, c_sc={"seccompProfile": None})),
    *_cases("seccompProfile_restricted", R, L, False,
            Shape(pod_sc={"seccompProfile": {"type": "RuntimeDefault"}},
                  c_sc={"seccompProfile": None}),
            Shape(pod=WINDOWS, c_sc={"seccompProfile": None})),
    *_cases("capabilities_restricted", R, L, True, Shape(c_sc={"capabilities": None}),
            Shape(c_sc={"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}),
            Shape(c_sc={"capabilities": {"drop": ["NET_RAW"]}}, where="initContainers")),
    *_cases("capabilities_restricted", R, "v1.24", True,
            Shape(pod=WINDOWS, c_sc={"capabilities": None})),
    *_cases("capabilities_restricted", R, L, False,
            Shape(c_sc={"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}),
            Shape(pod=WINDOWS, c_sc={"capabilities": None})),
    # the restricted level keeps procMount strict for user-namespace pods from v1.35
    *_cases("procMount_restricted", R, L, True,
            Shape(pod={"hostUsers": False}, c_sc={"procMount": "Unmasked"}), UNMASKED),
    *_cases("procMount_restricted", R, L, False, Shape(c_sc={"procMount": "Default"})),
]
