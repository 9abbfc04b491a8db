"""The Gatekeeper Rego (run by regopy on Gatekeeper's input shape) and the VAP CEL (run by the
CEL engine) give the same verdict, control by control, on the same objects. Every rule is also
shown to fire, so a module the engine silently misreads cannot pass."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.check.engine import Checker
from corral.compile.admission_cel import KINDS
from corral.model.images import image_admitted, parse_registry_prefix
from corral.model.policy import Policy
from tests.admission.helpers import (
    GOOD_CONTAINER,
    draw_containers,
    failing,
    make_policy,
    only,
    pod,
    run,
    workload,
)
from tests.admission.rego_runner import RegoEngine
from tests.admission.test_cel_controls import BAD, mutate
from tests.admission.test_images_cel import PREFIX_SETS, references

pytestmark = pytest.mark.engine

SETTINGS = {
    "capabilities": {"allowed": ["NET_BIND_SERVICE", "CHOWN"]},
    "privileged": {"exempt_images": ["registry.example.com/agents/debug:*"]},
    "tags": {"disallowed": ["latest", "dev"]},
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return make_policy({"controls": SETTINGS | {"digest": True}})


@pytest.fixture(scope="module")
def engines(policy: Policy) -> tuple[Checker, RegoEngine]:
    return Checker(policy), RegoEngine(policy)


def verdicts(engines: tuple[Checker, RegoEngine], obj: dict[str, Any], op: str = "CREATE",
             sub: str = "") -> tuple[set[str], set[str]]:
    checker, rego = engines
    return failing(checker, obj, operation=op, sub_resource=sub), set(
        rego.violations(obj, op, sub))


def test_good_pod_passes_both(engines: tuple[Checker, RegoEngine]) -> None:
    spec = mutate("image", "registry.example.com/agents/a@sha256:" + "a" * 64)
    assert verdicts(engines, pod(spec)) == (set(), set())


@pytest.mark.parametrize(("control", "path", "value", "where"),
                         [(c, *m) for c, ms in BAD.items() for m in ms])
def test_every_rule_fires_in_both(engines: tuple[Checker, RegoEngine], control: str, path: str,
                                  value: Any, where: str) -> None:
    cel_v, rego_v = verdicts(engines, pod(mutate(path, value, where)))
    assert control in rego_v
    assert cel_v == rego_v


# --- generated pod specs -----------------------------------------------------------------------

MAYBE = st.none()  # None = leave the field out


def field(values: Any) -> st.SearchStrategy[Any]:
    return st.one_of(MAYBE, st.sampled_from(values))


@st.composite
def containers(draw: st.DrawFn, ephemeral: bool = False) -> dict[str, Any]:
    ctr: dict[str, Any] = {"name": draw(st.sampled_from(["a", "b", "c"]))}
    image = draw(field(["registry.example.com/agents/r:1", "registry.example.com/agents/r",
                        "registry.example.com/agents/r:dev", "nginx", "ghcr.io/corral-dev/x:2",
                        "registry.example.com/agents/debug:1", "evil.io/x:1",
                        "registry.example.com/agents/r@sha256:" + "b" * 64]))
    if image is not None:
        ctr["image"] = image
    sc: dict[str, Any] = {}
    for key, values in [("privileged", [True, False]), ("allowPrivilegeEscalation", [True, False]),
                        ("readOnlyRootFilesystem", [True, False]),
                        ("runAsNonRoot", [True, False]), ("runAsUser", [0, 1000]),
                        ("seccompProfile", [{"type": "RuntimeDefault"}, {"type": "Unconfined"},
                                            {"type": "Localhost", "localhostProfile": "p"}]),
                        ("capabilities", [{"drop": ["ALL"]}, {"add": ["CHOWN"], "drop": ["ALL"]},
                                          {"add": ["SYS_ADMIN"]}, {"drop": ["NET_RAW"]}, {}])]:
        value = draw(field(values))
        if value is not None:
            sc[key] = value
    if draw(st.booleans()):
        ctr["securityContext"] = sc
    limits = draw(field([{"cpu": "1", "memory": "1Gi"}, {"cpu": "1"}, {}]))
    if limits is not None and not ephemeral:
        ctr["resources"] = {"limits": limits}
    return ctr


@st.composite
def pod_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec = draw_containers(draw, containers, 5)
    for key, values in [("hostPID", [True, False]), ("hostIPC", [True, False]),
                        ("hostNetwork", [True, False]),
                        ("automountServiceAccountToken", [True, False, False]),
                        ("volumes", [[{"name": "h", "hostPath": {"path": "/"}}],
                                     [{"name": "e", "emptyDir": {}}]]),
                        ("securityContext", [{"runAsNonRoot": True}, {"runAsUser": 0},
                                             {"seccompProfile": {"type": "RuntimeDefault"}},
                                             {"runAsNonRoot": True, "runAsUser": 10,
                                              "seccompProfile": {"type": "Localhost",
                                                                 "localhostProfile": "x"}}])]:
        value = draw(field(values))
        if value is not None:
            spec[key] = copy.deepcopy(value)
    return spec


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=pod_specs(), kind=st.sampled_from(KINDS),
       op=st.sampled_from([("CREATE", ""), ("UPDATE", ""), ("UPDATE", "ephemeralcontainers")]))
def test_generated_objects_agree(engines: tuple[Checker, RegoEngine], spec: dict[str, Any],
                                 kind: str, op: tuple[str, str]) -> None:
    obj = pod(spec) if kind == "Pod" else workload(kind, spec)
    cel_v, rego_v = verdicts(engines, obj, *op)
    assert cel_v == rego_v


# --- image references ---------------------------------------------------------------------------

@pytest.fixture(scope="module", params=range(len(PREFIX_SETS)))
def image_case(request: pytest.FixtureRequest) -> tuple[RegoEngine, tuple[Any, ...]]:
    texts = PREFIX_SETS[request.param]
    return (RegoEngine(make_policy(only("registries"), registries=texts)),
            tuple(parse_registry_prefix(t) for t in texts))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=references())
def test_rego_images_agree_with_reference(image_case: tuple[RegoEngine, tuple[Any, ...]],
                                          ref: str) -> None:
    rego, prefixes = image_case
    obj = pod({"containers": [{"name": "c", "image": ref}]})
    assert (not rego.query("registries", obj)) == image_admitted(ref, prefixes)


def test_container_named_in_message(engines: tuple[Checker, RegoEngine]) -> None:
    spec = {"containers": [copy.deepcopy(GOOD_CONTAINER)],
            "initContainers": [copy.deepcopy(GOOD_CONTAINER) | {"name": "setup",
                                                                 "image": "evil.io/x:1"}]}
    msgs = engines[1].query("registries", pod(spec))
    assert msgs == ["registries: container setup uses an image outside the approved registries "
                    "(evil.io/x:1)"]


# --- corral check's projection never changes a result -----------------------------------------

JUNK = st.dictionaries(st.sampled_from(["env", "ports", "args", "annotations", "x-extra",
                                        "livenessProbe", "volumeMounts"]),
                       st.lists(st.text(max_size=5), max_size=3), max_size=3)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=pod_specs(), kind=st.sampled_from(KINDS), junk=JUNK)
def test_projection_is_invisible(policy: Policy, spec: dict[str, Any], kind: str,
                                 junk: dict[str, Any]) -> None:
    for ctr in spec["containers"]:
        ctr.update(junk)
    spec.update(junk)
    obj = pod(spec) if kind == "Pod" else workload(kind, spec)
    full = Checker(policy, projection=False)
    lean = Checker(policy)
    assert [(v.control, v.message, v.containers) for v in run(full, obj).violations] == [
        (v.control, v.message, v.containers) for v in run(lean, obj).violations]
