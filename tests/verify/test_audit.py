"""corral audit: every planted weakness in a realistic cluster dump is found, and nothing in what
corral itself renders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from corral.model.load import load_policy
from corral.verify import audit as au
from corral.verify import objects as k
from tests.verify.dumps import cluster_dump

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "corral.yaml"

# Every weakness planted in the dump (fixtures/cluster-dump.json plus two drifts in dumps.py), and
# the namespace `default`, which like in a real cluster has no policy at all.
PLANTED = {
    ("default-deny-ingress-missing", "Namespace/team-web"),
    ("default-deny-egress-missing", "Namespace/team-web"),
    ("default-deny-egress-missing", "Namespace/analytics"),
    ("default-deny-ingress-missing", "Namespace/default"),
    ("default-deny-egress-missing", "Namespace/default"),
    ("egress-allows-all", "NetworkPolicy/ai-workloads/allow-all-egress"),
    ("ipblock-everything", "NetworkPolicy/analytics/legacy-egress"),
    ("ipblock-everything", "NetworkPolicy/analytics/v6-egress"),
    ("empty-namespace-selector", "NetworkPolicy/analytics/metrics-from-anywhere"),
    ("pod-unselected", "Deployment/team-web/storefront"),
    ("dns-egress-missing", "CronJob/batch/nightly-report"),
    ("agent-uncovered", "Pod/ai-workloads/debug-shell"),
    ("agent-egress-bypasses-gateway", "NetworkPolicy/ai-workloads/allow-openai-direct"),
    ("drift-missing", "NetworkPolicy/ai-workloads/corral-quarantine"),
    ("drift-changed", "NetworkPolicy/ai-workloads/egress-research"),
    ("drift-stale", "NetworkPolicy/ai-workloads/egress-scraper"),
}


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return load_policy(EXAMPLE)


@pytest.fixture(scope="module")
def dump_file(policy, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("cluster") / "cluster-dump.json"
    path.write_text(json.dumps(cluster_dump(policy), indent=2))
    return path


def test_every_planted_weakness_is_found_and_nothing_else(policy, dump_file) -> None:  # type: ignore[no-untyped-def]
    found = {(f.rule, f.object) for f in au.audit(k.load_paths([str(dump_file)]), policy)}
    assert found == PLANTED


def test_without_policy_the_policy_checks_stay_silent(dump_file) -> None:  # type: ignore[no-untyped-def]
    found = {f.rule for f in au.audit(k.load_paths([str(dump_file)]))}
    assert not found & {"agent-uncovered", "drift-missing", "drift-changed", "drift-stale"}
    assert "egress-allows-all" in found


def test_system_namespaces_only_with_include_system(policy, dump_file) -> None:  # type: ignore[no-untyped-def]
    objs = k.load_paths([str(dump_file)])
    found = {(f.rule, f.object) for f in au.audit(objs, policy, include_system=True)}
    assert ("default-deny-egress-missing", "Namespace/kube-system") in found
    assert ("pod-unselected", "Pod/kube-system/coredns-668d6bf9bc-8xk2w") in found


def test_rendered_output_has_no_findings(policy) -> None:  # type: ignore[no-untyped-def]
    rendered = au.rendered_objects(policy)
    assert len(rendered) > 10
    assert au.audit(rendered, policy) == []
    assert au.audit(rendered) == []


def test_rendered_output_of_a_cilium_policy_has_no_findings(policy) -> None:  # type: ignore[no-untyped-def]
    data = policy.model_dump(by_alias=True)
    data["spec"]["network"] = {"cilium": True}
    cilium = type(policy).model_validate(data)
    assert au.audit(au.rendered_objects(cilium), cilium) == []


def test_rendered_files_on_disk_audit_clean(policy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    code = _cli("render", "-f", str(EXAMPLE), "-o", str(out)).returncode
    assert code == 0
    done = _cli("audit", str(out), "-f", str(EXAMPLE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors, 0 warnings" in done.stdout


def _cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral", *argv], capture_output=True,
                          text=True, input=stdin, timeout=60, cwd=ROOT, check=False)


def test_cli_reads_stdin_and_exits_1_with_json(dump_file) -> None:  # type: ignore[no-untyped-def]
    done = _cli("audit", "-", "-f", str(EXAMPLE), "-o", "json", stdin=dump_file.read_text())
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert {(f["rule"], f["object"]) for f in data["findings"]} == PLANTED
    assert all(f["help"] and f["level"] in ("error", "warning") for f in data["findings"])


def test_cli_sarif_names_every_rule_and_locates_results(dump_file) -> None:  # type: ignore[no-untyped-def]
    done = _cli("audit", str(dump_file), "-o", "sarif")
    assert done.returncode == 1
    sarif = json.loads(done.stdout)
    run = sarif["runs"][0]
    assert sarif["version"] == "2.1.0"
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in run["results"]} <= rule_ids
    first = run["results"][0]["locations"][0]
    assert first["physicalLocation"]["artifactLocation"]["uri"].endswith("cluster-dump.json")


def test_cli_bad_input_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    done = _cli("audit", str(bad))
    assert done.returncode == 2
    assert "bad.yaml" in done.stderr and "kind" in done.stderr


# -- the pieces, against the Kubernetes API's semantics -------------------------------------

def test_selectors() -> None:
    labels = {"app": "a", "tier": "x"}
    assert k.selector_matches({}, labels)
    assert not k.selector_matches(None, labels)
    assert k.selector_matches({"matchLabels": {"app": "a"}}, labels)
    assert not k.selector_matches({"matchLabels": {"app": "b"}}, labels)
    expr = {"key": "corral.dev/quarantine", "operator": "NotIn", "values": ["true"]}
    assert k.selector_matches({"matchExpressions": [expr]}, labels)
    assert not k.selector_matches({"matchExpressions": [expr]},
                                  {**labels, "corral.dev/quarantine": "true"})
    assert k.selector_matches({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, labels)
    assert not k.selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, labels)


def test_policy_types_default_like_the_api_server() -> None:
    assert k.policy_types({"spec": {"podSelector": {}}}) == {"Ingress"}
    assert k.policy_types({"spec": {"egress": [{}]}}) == {"Ingress", "Egress"}
    assert k.is_default_deny({"spec": {"podSelector": {}}}, "Ingress")
    assert not k.is_default_deny({"spec": {"podSelector": {}}}, "Egress")


def test_port_ranges_and_protocols() -> None:
    assert k.port_allows(None, 53, "UDP")
    assert k.port_allows([{"port": 50, "endPort": 60, "protocol": "UDP"}], 53, "UDP")
    assert not k.port_allows([{"port": 53}], 53, "UDP")  # protocol defaults to TCP
    assert k.port_allows([{"protocol": "UDP"}], 53, "UDP")


def test_ipblock_excepts() -> None:
    full = {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                            "169.254.0.0/16", "100.64.0.0/10"]}
    assert k.uncovered_sensitive(full) == []
    wider = {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                             "169.254.169.254/32", "100.64.0.0/10"]}
    assert [str(n) for n in k.uncovered_sensitive(wider)] == ["169.254.0.0/16"]


def test_differences_ignore_server_defaults_but_not_changes() -> None:
    want = {"spec": {"ports": [{"port": 80}]}}
    assert au.differences(want, {"spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}) == []
    assert au.differences(want, {"spec": {"ports": [{"port": 81}]}}) == ["spec.ports[0].port"]
    assert au.differences(want, {"spec": {"ports": []}}) == ["spec.ports"]


def test_controller_owned_pods_are_audited_through_their_owner(dump_file) -> None:  # type: ignore[no-untyped-def]
    objs = k.load_paths([str(dump_file)])
    owners = {p.owner.ref for p in k.pods_of(objs)}
    assert "Deployment/team-web/storefront" in owners
    assert not any(r.startswith(("Pod/team-web/", "ReplicaSet/team-web/")) for r in owners)


def test_declared_direct_cidrs_are_not_a_bypass(policy, dump_file) -> None:  # type: ignore[no-untyped-def]
    data = policy.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["spec"].setdefault("runtime", {})["direct_cidrs"] = ["162.159.140.0/24"]
    declared = type(policy).model_validate(data)
    found = {f.rule for f in au.audit(k.load_paths([str(dump_file)]), declared)}
    assert "agent-egress-bypasses-gateway" not in found
    assert "agent-uncovered" in found


def _open_block(annotation: str | None) -> list[k.Located]:
    meta: dict[str, object] = {"name": "wide", "namespace": "tools"}
    if annotation is not None:
        meta["annotations"] = {au.ACCEPT_ANNOTATION: annotation}
    np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta,
          "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                               "ports": [{"protocol": "TCP", "port": 443}]}]}}
    return [k.Located(np, "test")]


@pytest.mark.parametrize(("annotation", "reported"), [
    (None, True),
    ("ipblock-everything", True),  # no reason: not accepted
    ("ipblock-everything:   ", True),
    ("egress-allows-all: other rule", True),
    ("ipblock-everything: sinks are reached by address", False),
    ("egress-allows-all: x; ipblock-everything: sinks are reached by address", False),
])
def test_accepted_findings_need_a_rule_and_a_reason(annotation: str | None,
                                                    reported: bool) -> None:
    rules = {f.rule for f in au.audit(_open_block(annotation))}
    assert ("ipblock-everything" in rules) is reported
