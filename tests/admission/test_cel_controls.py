"""Each control, compiled to CEL and evaluated by the real engine: passes a compliant object,
fires on the violation it exists for, everywhere a pod spec can hide."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from corral.check.engine import Checker
from corral.compile.admission_cel import KINDS, cel_controls
from corral.model.admission import Controls
from tests.admission.helpers import (
    GOOD_CONTAINER,
    failing,
    good_pod_spec,
    make_policy,
    only,
    pod,
    run,
    workload,
)

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker(make_policy())


def mutate(path: str, value: Any, where: str = "containers") -> dict[str, Any]:
    """A good pod spec with one field of its first container (or of the pod) set."""
    spec = good_pod_spec()
    target: Any = spec if where == "pod" else spec[where][0] if where in spec else None
    if target is None:
        spec[where] = [copy.deepcopy(GOOD_CONTAINER)]
        target = spec[where][0]
    keys = path.split(".")
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    if value is DELETE:
        target.pop(keys[-1], None)
    else:
        target[keys[-1]] = value
    return spec


DELETE = object()

# control -> mutations of a compliant pod spec that must make exactly that control fire
BAD: dict[str, list[tuple[str, Any, str]]] = {
    "registries": [("image", "nginx:1.27", "containers"),
                   ("image", "registry.example.com.evil.io/agents/x:1", "containers"),
                   ("image", "registry.example.com/agents-evil/x:1", "containers"),
                   ("image", DELETE, "containers")],
    "tags": [("image", "registry.example.com/agents/research", "containers"),
             ("image", "registry.example.com/agents/research:latest", "containers")],
    "privileged": [("securityContext.privileged", True, "containers")],
    "privilege_escalation": [("securityContext.allowPrivilegeEscalation", True, "containers"),
                             ("securityContext.allowPrivilegeEscalation", DELETE, "containers")],
    "host_namespaces": [("hostPID", True, "pod"), ("hostIPC", True, "pod")],
    "host_network": [("hostNetwork", True, "pod")],
    "host_path": [("volumes", [{"name": "h", "hostPath": {"path": "/"}}], "pod")],
    "capabilities": [("securityContext.capabilities.add", ["SYS_ADMIN"], "containers"),
                     ("securityContext.capabilities.drop", ["NET_RAW"], "containers"),
                     ("securityContext.capabilities", DELETE, "containers")],
    "run_as_non_root": [("securityContext.runAsNonRoot", False, "containers"),
                        ("securityContext.runAsNonRoot", DELETE, "containers"),
                        ("securityContext.runAsUser", 0, "containers")],
    "seccomp": [("securityContext.seccompProfile", {"type": "Unconfined"}, "containers"),
                ("securityContext.seccompProfile", DELETE, "containers")],
    "read_only_root_filesystem": [("securityContext.readOnlyRootFilesystem", False, "containers"),
                                  ("securityContext", DELETE, "containers")],
    "automount_token": [("automountServiceAccountToken", True, "pod"),
                        ("automountServiceAccountToken", DELETE, "pod")],
    "limits": [("resources.limits", {"cpu": "1"}, "containers"),
               ("resources", DELETE, "containers")],
}


def test_every_default_control_has_bad_cases() -> None:
    assert set(Controls().enabled()) == set(BAD)


def test_compliant_pod_passes(checker: Checker) -> None:
    assert run(checker, pod()).violations == ()


@pytest.mark.parametrize(("control", "path", "value", "where"),
                         [(c, *m) for c, ms in BAD.items() for m in ms])
def test_control_fires(checker: Checker, control: str, path: str, value: Any, where: str) -> None:
    fired = failing(checker, pod(mutate(path, value, where)))
    if value is DELETE and path in ("securityContext", "securityContext.capabilities", "image"):
        assert control in fired  # removing a whole block trips several controls
    else:
        assert fired == {control}


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "Pod"])
def test_templates_are_checked(checker: Checker, kind: str) -> None:
    assert run(checker, workload(kind)).violations == ()
    bad = mutate("securityContext.privileged", True)
    assert failing(checker, workload(kind, bad)) == {"privileged"}


@pytest.mark.parametrize("where", ["initContainers", "ephemeralContainers"])
def test_every_container_list_is_checked(checker: Checker, where: str) -> None:
    spec = good_pod_spec()
    bad = copy.deepcopy(GOOD_CONTAINER) | {"name": "sneaky", "image": "evil.io/x:1"}
    if where == "ephemeralContainers":
        bad.pop("resources")
    spec[where] = [bad]
    out = run(checker, pod(spec)).violations
    assert [(v.control, v.containers) for v in out] == [("registries", ("sneaky",))]
    assert "sneaky" in out[0].message and "evil.io/x:1" in out[0].message


def test_ephemeral_containers_need_no_limits(checker: Checker) -> None:
    spec = good_pod_spec()
    eph = copy.deepcopy(GOOD_CONTAINER) | {"name": "debug"}
    eph.pop("resources")
    spec["ephemeralContainers"] = [eph]
    assert run(checker, pod(spec)).violations == ()


def test_pod_update_rechecks_images_only(checker: Checker) -> None:
    spec = mutate("securityContext.privileged", True)
    spec["containers"][0]["image"] = "evil.io/x:1"
    upd = failing(checker, pod(spec), operation="UPDATE")
    assert upd == {"registries"}
    sub = failing(checker, pod(spec), operation="UPDATE", sub_resource="ephemeralcontainers")
    assert sub == {"registries", "privileged"}
    assert failing(checker, workload("Deployment", spec), operation="UPDATE") == sub


def test_pod_level_settings_are_inherited(checker: Checker) -> None:
    spec = good_pod_spec()
    sc = spec["containers"][0]["securityContext"]
    del sc["runAsNonRoot"], sc["seccompProfile"]
    spec["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "Localhost",
                                                                       "localhostProfile": "p"}}
    assert run(checker, pod(spec)).violations == ()
    spec["securityContext"]["runAsUser"] = 0
    assert failing(checker, pod(spec)) == {"run_as_non_root"}


def test_settings_change_verdicts() -> None:
    c = Checker(make_policy(only("capabilities", "seccomp", "limits", "tags", "digest",
                                 capabilities={"allowed": ["NET_BIND_SERVICE"],
                                               "require_drop_all": False},
                                 seccomp={"profiles": ["Localhost"]},
                                 limits={"resources": ["memory"]},
                                 tags={"disallowed": ["latest", "dev"]})))
    spec = good_pod_spec()
    ctr = spec["containers"][0]
    ctr["securityContext"]["capabilities"] = {"add": ["NET_BIND_SERVICE"]}
    ctr["resources"] = {"limits": {"memory": "1Gi"}}
    ctr["image"] = "registry.example.com/agents/r:dev"
    assert failing(c, pod(spec)) == {"seccomp", "tags", "digest"}
    ctr["image"] = "registry.example.com/agents/r@sha256:" + "a" * 64
    ctr["securityContext"]["seccompProfile"] = {"type": "Localhost", "localhostProfile": "x"}
    assert failing(c, pod(spec)) == set()


def test_exempt_images() -> None:
    c = Checker(make_policy(only("privileged", privileged={"exempt_images": ["debug.io/*"]})))
    spec = mutate("securityContext.privileged", True)
    assert failing(c, pod(spec)) == {"privileged"}
    spec["containers"][0]["image"] = "debug.io/tools:1"
    assert failing(c, pod(spec)) == set()


def test_out_of_scope_objects_are_skipped(checker: Checker) -> None:
    other = pod(mutate("securityContext.privileged", True))
    other["metadata"]["namespace"] = "kube-system"
    assert run(checker, other).skipped is not None
    assert run(checker, {"kind": "Service", "metadata": {"name": "s"}}).skipped is not None
    assert Checker(make_policy(), all_namespaces=True).check(
        run(checker, other).doc).violations != ()


def test_broken_object_is_a_violation(checker: Checker) -> None:
    out = run(checker, {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "d"}, "spec": {}}).violations
    assert len(out) == len(cel_controls(make_policy()))  # every validation errors, as in K8s
    assert all("failurePolicy" in v.message and "'template'" in v.message for v in out)


def test_no_registries_refuses_every_image() -> None:
    c = Checker(make_policy(only("registries"), registries=[]))
    assert failing(c, pod()) == {"registries"}


def test_controls_compile_in_declaration_order() -> None:
    names = [c.name for c in cel_controls(make_policy())]
    assert names == list(Controls().enabled())


@pytest.mark.parametrize("evil", ["x')||true||('", "x\\')||true||(\\'", 'x")||true||("'])
def test_settings_cannot_inject_cel(evil: str) -> None:
    c = Checker(make_policy(only("privileged", privileged={"exempt_images": [evil]})))
    assert failing(c, pod(mutate("securityContext.privileged", True))) == {"privileged"}
    spec = mutate("securityContext.privileged", True)
    spec["containers"][0]["image"] = evil
    assert failing(c, pod(spec)) == set()  # the exact string is still what is exempt
