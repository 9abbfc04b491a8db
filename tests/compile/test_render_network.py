"""corral render, network and gateway layers: schema-valid, deterministic, and permitting exactly
what the design says (evaluated with a NetworkPolicy evaluator, not string-compared)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from corral.cli import main
from corral.compile.render import render_all
from corral.compile.write import MARKER
from corral.model.load import load_policy, parse_policy
from corral.model.policy import Policy
from corral.model.records import policy_version
from tests.compile.netpol import Pod, allowed

K8S_VERSION = "1.34.0"  # pinned: every rendered object must validate against this schema
EXAMPLE = Path(__file__).parents[2] / "examples" / "corral.yaml"


def objects(policy: Policy,
            folders: tuple[str, ...] = ("network", "gateway")) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for files in render_all(policy, set(folders)).values():
        for content in files.values():
            out.extend(d for d in yaml.safe_load_all(content.render()) if d)
    return out


@pytest.fixture(scope="module")
def example() -> Policy:
    return load_policy(EXAMPLE)


def test_every_object_validates_strictly(example: Policy) -> None:
    objs = objects(example, ("network", "gateway", "control"))
    assert len(objs) >= 25
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_schema_validation_can_fail() -> None:
    bad = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "x"}, "spec": {"podSelector": {}, "policyTypez": ["Egress"]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_render_twice_is_byte_identical(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["render", "-f", str(EXAMPLE), "-o", str(a)]) == 0
    assert main(["render", "-f", str(EXAMPLE), "-o", str(b)]) == 0
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_rerender_removes_stale_files_and_refuses_foreign_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["render", "-f", str(EXAMPLE), "-o", str(out)]) == 0
    stale = out / "network" / "20-egress-gone.yaml"
    stale.write_text("stale")
    assert main(["render", "-f", str(EXAMPLE), "-o", str(out)]) == 0
    assert not stale.exists() and (out / "network" / MARKER).exists()
    foreign = tmp_path / "foreign"
    (foreign / "network").mkdir(parents=True)
    (foreign / "network" / "mine.yaml").write_text("keep me")
    assert main(["render", "-f", str(EXAMPLE), "-o", str(foreign)]) == 2
    assert (foreign / "network" / "mine.yaml").read_text() == "keep me"


def _pods(policy: Policy) -> tuple[dict[str, Pod], Pod, Pod]:
    agents = {a.name: Pod(policy.spec.namespace, dict(a.selector)) for a in policy.spec.agents}
    gateway = Pod(policy.spec.gateway.namespace, {"app.kubernetes.io/name": "corral-gateway",
                                                  "app.kubernetes.io/part-of": "corral"})
    dns = Pod(policy.spec.dns.namespace, dict(policy.spec.dns.selector))
    return agents, gateway, dns


def test_each_agent_reaches_only_its_own_gateway_port(example: Policy) -> None:
    objs = objects(example)
    agents, gateway, dns = _pods(example)
    ports = example.spec.listener_ports()
    internet_pod = Pod("default", {"app": "web"})
    for name, pod in agents.items():
        for other, port in ports.items():
            assert allowed(objs, pod, gateway, port) is (other == name), (name, other)
        assert allowed(objs, pod, dns, 53, "UDP") and allowed(objs, pod, dns, 53, "TCP")
        assert not allowed(objs, pod, internet_pod, 443)
        for peer_name, peer in agents.items():
            if peer_name != name:
                assert not allowed(objs, pod, peer, 8080)


def test_unlisted_pod_in_agents_namespace_reaches_only_dns(example: Policy) -> None:
    objs = objects(example)
    _, gateway, dns = _pods(example)
    stranger = Pod(example.spec.namespace, {"app": "netshoot"})
    assert allowed(objs, stranger, dns, 53, "UDP")
    assert not any(allowed(objs, stranger, gateway, p)
                   for p in example.spec.listener_ports().values())


def test_quarantined_pod_loses_all_egress_and_ingress(example: Policy) -> None:
    objs = objects(example)
    agents, gateway, dns = _pods(example)
    ports = example.spec.listener_ports()
    for name, pod in agents.items():
        q = Pod(pod.namespace, {**pod.labels, "corral.dev/quarantine": "true"})
        assert not allowed(objs, q, gateway, ports[name])
        assert not allowed(objs, q, dns, 53, "UDP")
        assert not allowed(objs, Pod(example.spec.namespace, {}), q, 8080)


def test_namespace_labels_and_gateway_hardening(example: Policy) -> None:
    objs = {(o["kind"], o["metadata"]["name"]): o for o in objects(example)}
    ns = objs[("Namespace", "ai-workloads")]["metadata"]["labels"]
    assert ns["security-tier"] == "restricted"
    for mode in ("enforce", "audit", "warn"):
        assert ns[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    dep = objs[("Deployment", "corral-gateway")]["spec"]
    pod = dep["template"]["spec"]
    c = pod["containers"][0]
    assert dep["replicas"] == 2 and pod["automountServiceAccountToken"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["limits"]["memory"] == "512Mi"
    svc_ports = {p["name"]: p["port"] for p in objs[("Service", "corral-gateway")]["spec"]["ports"]}
    assert svc_ports == example.spec.listener_ports()
    cm = objs[("ConfigMap", "corral-gateway-policy")]["data"]["policy.yaml"]
    assert parse_policy(cm, "configmap")[0] == example  # the gateway reads the same policy
    announced = objs[("ConfigMap", "corral-gateway-policy")]["metadata"]["annotations"]
    assert announced["corral.dev/policy-version"] == policy_version(cm.encode())  # gateway logs


def test_gateway_egress_excludes_internal_ranges_but_admits_allowed_cidrs(example: Policy) -> None:
    objs = {(o["kind"], o["metadata"]["name"]): o for o in objects(example)}
    egress = objs[("NetworkPolicy", "corral-gateway-egress")]["spec"]["egress"]
    blocks = [p["ipBlock"] for rule in egress for p in rule["to"] if "ipBlock" in p]
    v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    assert {"10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8", "100.64.0.0/10"} <= set(v4["except"])
    assert {"cidr": "10.96.0.0/12"} in blocks


def test_cilium_policies_use_fqdns_for_enforce_agents_only(example: Policy) -> None:
    policy = example.model_copy(update={"spec": example.spec.model_copy(
        update={"network": example.spec.network.model_copy(update={"cilium": True})})})
    cnps = {o["metadata"]["name"]: o for o in objects(policy, ("network",))
            if o["kind"] == "CiliumNetworkPolicy"}
    assert set(cnps) == {"corral-research", "corral-coder"}
    research = cnps["corral-research"]["spec"]
    fqdns = [s for r in research["egress"] for s in r.get("toFQDNs", [])]
    assert {"matchName": "api.openai.com"} in fqdns
    assert {"matchPattern": "**.weather.gov"} in fqdns
    assert not any("toFQDNs" in r for r in cnps["corral-coder"]["spec"]["egress"])
    # Field layout of cilium.io/v2 CiliumNetworkPolicy rules we emit.
    for cnp in cnps.values():
        assert set(cnp["spec"]) == {"endpointSelector", "egress"}
        for rule in cnp["spec"]["egress"]:
            assert set(rule) <= {"toEndpoints", "toFQDNs", "toPorts"}
            for tp in rule["toPorts"]:
                assert all(set(p) == {"port", "protocol"} and p["port"].isdigit()
                           for p in tp["ports"])


def test_agents_cannot_reach_admin_port_or_forge_control_plane_events(example: Policy) -> None:
    objs = objects(example, ("network", "gateway", "control"))
    agents, gateway, _ = _pods(example)
    control = Pod("corral-system", {"app.kubernetes.io/name": "corral-control",
                                    "app.kubernetes.io/part-of": "corral"})
    falco = Pod("falco", {"app.kubernetes.io/name": "falco"})
    admin = example.spec.gateway.admin_port
    for pod in agents.values():
        assert not allowed(objs, pod, gateway, admin)
        assert not allowed(objs, pod, control, 8765)
    assert allowed(objs, control, gateway, admin)  # quarantine API
    assert allowed(objs, falco, control, 8765)  # Falco http_output


def test_control_plane_rbac_is_minimal_and_gateway_reads_the_overlay(example: Policy) -> None:
    objs = objects(example, ("gateway", "control"))
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["rules"]
             for o in objs if o["kind"] == "Role"}
    assert roles[("ai-workloads", "corral-control")] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]}]
    assert roles[("egress-gateway", "corral-control")] == [
        {"apiGroups": [""], "resources": ["configmaps"],
         "resourceNames": ["corral-gateway-overlay"], "verbs": ["get", "patch"]}]
    dep = next(o for o in objs if o["kind"] == "Deployment"
               and o["metadata"]["name"] == "corral-gateway")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--overlay") + 1] == "/etc/corral-overlay/overlay.json"
    serve = next(o for o in objs if o["kind"] == "Deployment"
                 and o["metadata"]["name"] == "corral-control")
    serve_args = serve["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "egress-gateway/corral-gateway-overlay" in serve_args
    admin = serve_args[serve_args.index("--gateway-admin") + 1]
    headless = next(o for o in objs if o["kind"] == "Service"
                    and o["metadata"]["name"] == "corral-gateway-admin")
    assert headless["spec"]["clusterIP"] == "None"  # resolves to every replica
    assert admin == "http://corral-gateway-admin.egress-gateway.svc:9090"
    assert serve["spec"]["strategy"] == {"type": "Recreate"}


def test_control_plane_outside_the_cluster_renders_nothing(example: Policy) -> None:
    spec = example.spec.model_copy(update={"runtime": example.spec.runtime.model_copy(
        update={"control_url": "https://siem.example.com/falco"})})
    assert render_all(example.model_copy(update={"spec": spec}), {"control"}) == {"control": {}}
