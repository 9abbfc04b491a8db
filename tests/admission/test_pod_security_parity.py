"""Pod Security Standards on generated pods: the CEL (``corral check``) and the Gatekeeper Rego
(regopy) agree check by check at several levels and versions, ``corral check``'s projection
never changes a verdict, and the rendered objects of every engine validate."""

from __future__ import annotations

import copy
import functools
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.check.engine import Checker
from corral.compile.admission_cel import KINDS, cel_controls, vap
from corral.compile.admission_rego import compile_gatekeeper
from corral.compile.kyverno import compile_kyverno
from corral.compile.render import render_all
from tests.admission.helpers import (
    draw_containers,
    failing,
    make_policy,
    only,
    pod,
    run,
    workload,
)
from tests.admission.pss_cases import Shape, engines, pss_policy
from tests.admission.test_gatekeeper_render import CONSTRAINT, TEMPLATE
from tests.admission.test_kyverno_gateway_api import CLUSTER_POLICY, run_kyverno_rule
from tests.admission.test_vap_render import K8S_VERSION

pytestmark = pytest.mark.engine

SETTINGS = [("restricted", "latest"), ("baseline", "latest"), ("restricted", "v1.18"),
            ("restricted", "v1.24"), ("baseline", "v1.34"), ("restricted", "v1.30")]


def maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.sampled_from(values))


def pick(draw: st.DrawFn, options: list[tuple[str, list[Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, values in options:
        value = draw(maybe(values))
        if value is not None:
            out[key] = copy.deepcopy(value)
    return out


PROFILES = [{"type": "RuntimeDefault"}, {"type": "Unconfined"},
            {"type": "Localhost", "localhostProfile": "p"}]
SELINUX = [{"type": "container_t"}, {"type": "spc_t"}, {"type": "container_engine_t"},
           {"user": "u"}, {"role": "r", "type": "container_t"}, {"level": "s0"}]
CONTAINER_SC = [
    ("privileged", [True, False]), ("allowPrivilegeEscalation", [True, False]),
    ("runAsNonRoot", [True, False]), ("runAsUser", [0, 1000]),
    ("seccompProfile", PROFILES), ("appArmorProfile", PROFILES), ("seLinuxOptions", SELINUX),
    ("procMount", ["Default", "Unmasked"]),
    ("windowsOptions", [{"hostProcess": True}, {"hostProcess": False}]),
    ("capabilities", [{"drop": ["ALL"]}, {"add": ["CHOWN"], "drop": ["ALL"]},
                      {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}, {"add": ["SYS_ADMIN"]},
                      {"drop": ["NET_RAW"]}, {}]),
]
POD_SC = [
    ("runAsNonRoot", [True, False]), ("runAsUser", [0, 1000]), ("seccompProfile", PROFILES),
    ("appArmorProfile", PROFILES), ("seLinuxOptions", SELINUX),
    ("windowsOptions", [{"hostProcess": True}]),
    ("sysctls", [[{"name": "kernel.shm_rmid_forced", "value": "0"}],
                 [{"name": "net.ipv4.tcp_rmem", "value": "1"}],
                 [{"name": "kernel.msgmax", "value": "1"}]]),
]
PROBES = [{"httpGet": {"port": 80, "host": "h"}}, {"tcpSocket": {"port": 80}},
          {"httpGet": {"port": 80, "host": ""}}, {"exec": {"command": ["true"]}}]
VOLUMES = [[{"name": "h", "hostPath": {"path": "/"}}], [{"name": "e", "emptyDir": {}}],
           [{"name": "n", "nfs": {"server": "s", "path": "/"}}],
           [{"name": "i", "image": {"reference": "r/x:1"}}, {"name": "s", "secret": {}}]]
ANNOTATION_KEYS = ["container.apparmor.security.beta.kubernetes.io/a",
                   "seccomp.security.alpha.kubernetes.io/pod",
                   "container.seccomp.security.alpha.kubernetes.io/b", "example.com/other"]
ANNOTATION_VALUES = ["unconfined", "runtime/default", "localhost/x", "", "docker/default"]


@st.composite
def containers(draw: st.DrawFn, ephemeral: bool = False) -> dict[str, Any]:
    ctr: dict[str, Any] = {"name": draw(st.sampled_from(["a", "b", "c"])), "image": "r/x:1"}
    if draw(st.booleans()):
        ctr["securityContext"] = pick(draw, CONTAINER_SC)
    ctr |= pick(draw, [("livenessProbe", PROBES), ("startupProbe", PROBES)])
    lifecycle = pick(draw, [("preStop", PROBES[:2]), ("postStart", PROBES[2:])])
    if lifecycle:
        ctr["lifecycle"] = lifecycle
    if not ephemeral:
        ctr |= pick(draw, [("ports", [[{"containerPort": 80, "hostPort": 80}],
                                      [{"containerPort": 80}]])])
    return ctr


@st.composite
def pod_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec = draw_containers(draw, containers, 4)
    spec |= pick(draw, [("hostPID", [True, False]), ("hostNetwork", [True, False]),
                        ("hostUsers", [True, False]), ("os", [{"name": "windows"},
                                                              {"name": "linux"}]),
                        ("volumes", VOLUMES)])
    if draw(st.booleans()):
        spec["securityContext"] = pick(draw, POD_SC)
    return spec


@st.composite
def objects(draw: st.DrawFn) -> dict[str, Any]:
    spec = draw(pod_specs())
    kind = draw(st.sampled_from(KINDS))
    obj = pod(spec) if kind == "Pod" else workload(kind, spec)
    annotations = draw(st.dictionaries(st.sampled_from(ANNOTATION_KEYS),
                                       st.sampled_from(ANNOTATION_VALUES), max_size=3))
    if annotations:
        meta = obj["metadata"] if kind == "Pod" else (
            obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"] if kind == "CronJob"
            else obj["spec"]["template"]["metadata"])
        meta["annotations"] = annotations
    return obj


@settings(max_examples=150, deadline=None)
@given(obj=objects(), setting=st.sampled_from(SETTINGS),
       op=st.sampled_from([("CREATE", ""), ("CREATE", ""), ("UPDATE", "ephemeralcontainers")]))
def test_generated_objects_agree(obj: dict[str, Any], setting: tuple[str, str],
                                 op: tuple[str, str]) -> None:
    checker, rego = engines(*setting)
    assert failing(checker, obj, operation=op[0], sub_resource=op[1]) == set(
        rego.violations(obj, *op))


@settings(max_examples=60, deadline=None)
@given(obj=objects(), setting=st.sampled_from(SETTINGS))
def test_projection_is_invisible(obj: dict[str, Any], setting: tuple[str, str]) -> None:
    policy = pss_policy(*setting)
    full, lean = Checker(policy, projection=False), engines(*setting)[0]
    assert [(v.control, v.message) for v in run(full, obj).violations] == [
        (v.control, v.message) for v in run(lean, obj).violations]


def test_generated_pods_reach_every_check() -> None:
    """The generator can make each restricted check fire (so parity is not vacuous)."""
    checker, _ = engines("restricted", "latest")
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None)
    @given(obj=objects())
    def collect(obj: dict[str, Any]) -> None:
        seen.update(failing(checker, obj))

    collect()
    assert {"pss_hostNamespaces", "pss_privileged", "pss_sysctls", "pss_appArmorProfile",
            "pss_restrictedVolumes", "pss_runAsUser", "pss_capabilities_restricted"} <= seen


# --- rendered objects ------------------------------------------------------------------------

@pytest.mark.parametrize("setting", SETTINGS)
def test_rendered_objects_validate(setting: tuple[str, str]) -> None:
    policy = pss_policy(*setting)
    out = render_all(policy, {"admission-vap", "network"})
    for files in out.values():
        for f in files.values():
            for obj in yaml.safe_load_all(f.render()):
                if obj:
                    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    gatekeeper = compile_gatekeeper(policy)
    templates = gatekeeper["constraint-templates.yaml"].objects  # type: ignore[union-attr]
    constraints = gatekeeper["constraints.yaml"].objects  # type: ignore[union-attr]
    kinds = {t["spec"]["crd"]["spec"]["names"]["kind"] for t in templates}
    assert len(kinds) == len(templates)
    import jsonschema  # type: ignore[import-untyped]  # no stubs

    for tpl, con in zip(templates, constraints, strict=True):
        jsonschema.validate(tpl, TEMPLATE)
        jsonschema.validate(con, CONSTRAINT)
        jsonschema.validate(con["spec"]["parameters"],
                            tpl["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"])
    for obj in compile_kyverno(policy)["cluster-policies.yaml"].objects:  # type: ignore[union-attr]
        jsonschema.validate(obj, CLUSTER_POLICY)
        assert obj["metadata"]["name"] == obj["metadata"]["name"].lower()


# --- controls a level implies are not compiled: sound on generated pods ----------------------

IMPLIED_SETTINGS = [("restricted", "latest"), ("restricted", "v1.30"), ("restricted", "v1.20"),
                    ("baseline", "latest")]
OVERLAPPING = ("privileged", "host_namespaces", "host_network", "host_path",
               "privilege_escalation", "seccomp", "capabilities", "run_as_non_root")


@functools.cache
def own_checker(name: str) -> Checker:
    return Checker(make_policy(only(name, capabilities={"allowed": ["NET_BIND_SERVICE"]})))


@settings(max_examples=80, deadline=None)
@given(obj=objects(), setting=st.sampled_from(IMPLIED_SETTINGS))
def test_dropped_controls_are_implied(obj: dict[str, Any], setting: tuple[str, str]) -> None:
    """Whenever a control the level makes redundant refuses an object (Linux pods: with a level,
    the Linux-only controls exempt Windows pods), the level refuses it too."""
    policy = make_policy(only(*OVERLAPPING, capabilities={"allowed": ["NET_BIND_SERVICE"]})
                         | {"pod_security": {"level": setting[0], "version": setting[1]}})
    kept = {c.name for c in cel_controls(policy)}
    dropped = [n for n in OVERLAPPING if n not in kept]
    level_fails = failing(engines(*setting)[0], obj)
    for name in dropped:
        if failing(own_checker(name), obj) and not _windows(obj):
            assert level_fails, name


def _windows(obj: dict[str, Any]) -> bool:
    spec = obj["spec"]
    spec = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec", spec)
    return bool(spec.get("os", {}).get("name") == "windows")


def test_which_controls_a_level_implies() -> None:
    def dropped(level: str, version: str, **settings: Any) -> set[str]:
        policy = make_policy(only(*OVERLAPPING, **settings)
                             | {"pod_security": {"level": level, "version": version}})
        return set(OVERLAPPING) - {c.name for c in cel_controls(policy)}

    always = {"privileged", "host_namespaces", "host_network", "host_path"}
    assert dropped("baseline", "latest") == always
    assert dropped("restricted", "latest") == always | {"privilege_escalation", "seccomp"}
    assert dropped("restricted", "v1.30") == always | {"privilege_escalation", "seccomp",
                                                       "run_as_non_root"}
    assert "capabilities" in dropped("restricted", "latest",
                                     capabilities={"allowed": ["NET_BIND_SERVICE"]})
    assert "seccomp" not in dropped("restricted", "latest", seccomp={"profiles": ["Localhost"]})
    assert "seccomp" in dropped("restricted", "latest",
                                seccomp={"profiles": ["RuntimeDefault", "Localhost"]})


def test_kyverno_rules_carry_the_vap_cel_and_fire() -> None:
    policy = pss_policy("restricted", "latest")
    rules = {o["spec"]["rules"][0]["name"]: o["spec"]["rules"][0]
             for o in compile_kyverno(policy)["cluster-policies.yaml"].objects}  # type: ignore[union-attr]
    spec = vap(policy)["spec"]
    assert [r["validate"]["cel"]["expressions"][0]["expression"] for r in rules.values()] == [
        v["expression"] for v in spec["validations"]]
    assert all(r["validate"]["cel"]["variables"] == spec["variables"] for r in rules.values())
    bad = Shape(pod={"hostPID": True}, c={"ports": [{"containerPort": 1, "hostPort": 1}]},
                annotations={"container.apparmor.security.beta.kubernetes.io/sub": "x"})
    failing_rules = {n for n, r in rules.items() if not run_kyverno_rule(bad.pod_object(), r)}
    assert failing_rules == {"pss-hostnamespaces", "pss-hostports", "pss-apparmorprofile"}
    assert all(run_kyverno_rule(Shape().pod_object(), r) for r in rules.values())
