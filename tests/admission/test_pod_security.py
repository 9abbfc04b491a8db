"""``spec.admission.pod_security``: every check of both Pod Security Standards levels, on resources
of our own (``pss_cases``), evaluated by the real CEL engine (``corral check``'s Checker) and by
regopy on the Gatekeeper Rego, with the same verdict in both; the standard's version table;
workload templates and ephemeral containers; messages naming the check ID."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.check.engine import Checker
from corral.cli import main
from corral.compile import admission_pss as pss
from corral.compile.admission_cel import KINDS, cel_controls
from corral.compile.network import agents_namespace
from corral.model.errors import PolicyError
from tests.admission.helpers import failing, make_policy, only, pod, run, workload
from tests.admission.pss_cases import CASES, Case, Shape, engines, pss_policy
from tests.admission.rego_runner import RegoEngine
from tests.admission.test_check_cli import EXAMPLE

pytestmark = pytest.mark.engine


def verdicts(level: str, version: str, obj: dict[str, Any], op: str = "CREATE",
             sub: str = "") -> tuple[set[str], set[str]]:
    checker, rego = engines(level, version)
    return (failing(checker, obj, operation=op, sub_resource=sub),
            set(rego.violations(obj, op, sub)))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_check(case: Case) -> None:
    cel_v, rego_v = verdicts(case.level, case.version, case.shape.pod_object())
    assert cel_v == rego_v
    assert (f"pss_{case.check}" in cel_v) is case.fires
    if not case.fires:
        assert cel_v == set()  # the compliant resources comply with the whole level


def test_every_check_has_violating_and_compliant_cases() -> None:
    fired = {c.check for c in CASES if c.fires}
    passed = {c.check for c in CASES if not c.fires}
    every = {c.id for c in pss.CHECKS}
    assert fired == every and passed == every


@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_compliant_pod_passes(level: str) -> None:
    assert verdicts(level, "latest", Shape().pod_object()) == (set(), set())


# --- the version table ---------------------------------------------------------------------------

def ids(level: str, version: str) -> list[str]:
    return [c.id for c in pss.active(level, pss.minor(version))]


def test_levels_at_latest() -> None:
    baseline = ["windowsHostProcess", "hostNamespaces", "privileged", "capabilities_baseline",
                "hostPathVolumes", "hostPorts", "appArmorProfile", "seLinuxOptions", "procMount",
                "seccompProfile_baseline", "sysctls", "hostProbesAndHostLifecycle"]
    assert ids("baseline", "latest") == baseline
    assert ids("restricted", "latest") == [
        "windowsHostProcess", "hostNamespaces", "privileged", "hostPorts", "appArmorProfile",
        "seLinuxOptions", "sysctls", "hostProbesAndHostLifecycle", "restrictedVolumes",
        "allowPrivilegeEscalation", "runAsNonRoot", "runAsUser", "seccompProfile_restricted",
        "capabilities_restricted", "procMount_restricted"]


def test_overrides_follow_the_overriding_checks_versions() -> None:
    old = ids("restricted", "v1.18")
    assert "seccompProfile_baseline" in old and "capabilities_baseline" in old
    assert "hostPathVolumes" not in old and "runAsUser" not in old
    assert "capabilities_baseline" not in ids("restricted", "v1.22")
    assert "procMount" in ids("restricted", "v1.34")
    assert "procMount_restricted" not in ids("restricted", "v1.34")
    assert "allowPrivilegeEscalation" not in ids("restricted", "v1.7")


def test_versions_above_the_newest_clamp_to_latest() -> None:
    assert pss.minor("v1.99") == pss.minor("latest") == pss.MAX_MINOR
    assert ids("restricted", "v1.99") == ids("restricted", "latest")


@pytest.mark.parametrize("version", ["1.30", "v2.0", "v1.x", "v1.030", "", 30])
def test_bad_version_is_a_policy_error(version: Any) -> None:
    with pytest.raises(PolicyError, match="Pod Security Standards version"):
        make_policy({"pod_security": {"level": "baseline", "version": version}})


def test_bad_level_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="pod_security"):
        make_policy({"pod_security": {"level": "privileged"}})


# --- scope: workload templates, ephemeral containers, updates --------------------------------

BAD_SPEC = Shape(pod={"hostIPC": True}, c_sc={"privileged": True}).spec()


@pytest.mark.parametrize("kind", KINDS)
def test_workload_templates(kind: str) -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": copy.deepcopy(BAD_SPEC)} if kind == "Pod" else workload(
        kind, copy.deepcopy(BAD_SPEC))
    cel_v, rego_v = verdicts("baseline", "latest", obj)
    assert cel_v == rego_v == {"pss_hostNamespaces", "pss_privileged"}


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "Pod"])
def test_template_annotations_are_read(kind: str) -> None:
    obj = workload(kind, Shape().spec())
    template = (obj["spec"]["jobTemplate"]["spec"]["template"] if kind == "CronJob"
                else obj["spec"]["template"])
    template["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/sub": "unconfined"}
    assert verdicts("baseline", "latest", obj) == ({"pss_appArmorProfile"},) * 2


def test_ephemeral_container_subresource_update_is_checked() -> None:
    obj = Shape(c_sc={"privileged": True}, where="ephemeralContainers").pod_object()
    cel_v, rego_v = verdicts("baseline", "latest", obj, "UPDATE", "ephemeralcontainers")
    assert cel_v == rego_v == {"pss_privileged"}
    assert verdicts("baseline", "latest", obj, "UPDATE") == (set(), set())


def test_message_names_check_id_and_container() -> None:
    checker, rego = engines("restricted", "v1.30")
    obj = Shape(c_sc={"runAsUser": 0}, where="initContainers").pod_object()
    (violation,) = run(checker, obj).violations
    assert violation.control == "pss_runAsUser"
    assert violation.message.startswith("runAsUser (Pod Security Standards restricted:v1.30)")
    assert "container sub" in violation.message and violation.containers == ("sub",)
    assert rego.violations(obj)["pss_runAsUser"][0].startswith("runAsUser (Pod Security")


COMBINED = {"controls": {"privileged": True, "host_path": True, "run_as_non_root": True,
                         "seccomp": True, "capabilities": True, "privilege_escalation": True,
                         "registries": False, "tags": False, "limits": False,
                         "automount_token": False, "read_only_root_filesystem": False}}


@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_controls_and_pod_security_combine(level: str) -> None:
    """Both apply; a control the level implies is compiled once, under the check's ID; with a
    level, corral's Linux-only controls exempt Windows pods as the standard does."""
    policy = make_policy(COMBINED | {"pod_security": {"level": level}})
    checker, rego = Checker(policy), RegoEngine(policy)
    names = {c.name for c in cel_controls(policy)}
    assert not names & {"privileged", "host_namespaces", "host_network", "host_path"}
    obj = Shape(c_sc={"privileged": True, "runAsNonRoot": None}).pod_object()
    expected = {"pss_privileged", "run_as_non_root"} | (
        {"pss_runAsNonRoot"} if level == "restricted" else set())
    assert failing(checker, obj) == set(rego.violations(obj)) == expected
    windows = Shape(pod={"os": {"name": "windows"}}, c_sc={
        "seccompProfile": None, "capabilities": None, "allowPrivilegeEscalation": None}).spec()
    windows["containers"] = windows["containers"][1:]
    for c in windows["containers"]:
        c["securityContext"] = {"runAsNonRoot": True}
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w"}, "spec": windows}
    assert failing(checker, obj) == set(rego.violations(obj)) == set()


def test_without_a_level_linux_only_controls_still_refuse_windows_pods() -> None:
    policy = make_policy(only("seccomp"))
    spec = {"os": {"name": "windows"}, "containers": [{"name": "w", "image": "x:1"}]}
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w"}, "spec": spec}
    assert failing(Checker(policy), obj) == set(RegoEngine(policy).violations(obj)) == {"seccomp"}


# --- the agents' Namespace --------------------------------------------------------------------

def test_namespace_labels_use_level_and_version() -> None:
    labels = agents_namespace(pss_policy("baseline", "v1.33"))["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "baseline"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.33"
    default = agents_namespace(make_policy())["metadata"]["labels"]
    assert default["pod-security.kubernetes.io/enforce"] == "restricted"
    assert default["pod-security.kubernetes.io/enforce-version"] == "latest"
    assert labels["security-tier"] == "baseline" and default["security-tier"] == "restricted"


# --- corral check, end to end ---------------------------------------------------------------

def test_corral_check_cli_names_the_check(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    policy = yaml.safe_load(EXAMPLE.read_text())
    policy["spec"].setdefault("admission", {})["pod_security"] = {"level": "baseline",
                                                                  "version": "v1.33"}
    policy_file = tmp_path / "corral.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    bad = pod(Shape(c={"ports": [{"containerPort": 80, "hostPort": 80}]}).spec(), name="bad")
    manifests = tmp_path / "m.yaml"
    manifests.write_text(yaml.safe_dump(bad))
    code = main(["check", "-f", str(policy_file), "-o", "json", str(manifests)])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    hits = [v for v in data["violations"] if v["control"] == "pss_hostPorts"]
    assert hits
    assert hits[0]["message"].startswith("hostPorts (Pod Security Standards baseline:v1.33)")
