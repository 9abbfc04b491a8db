"""The rendered control plane carries authentication end to end: Falco's http_output with
mutual TLS and the client Secret mounted, serve with its TLS and token Secrets, and a
NetworkPolicy that admits ingest only from Falco and the log shipper and admin calls only from
the namespaces ``spec.control.admin_namespaces`` names (evaluated, not string-compared)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import yaml

from corral.cli import build_parser
from corral.compile.falco import VALUES_FILE, compile_falco
from corral.model.load import load_policy
from corral.model.policy import Policy
from tests.compile.netpol import Pod, allowed
from tests.compile.test_render_network import EXAMPLE, K8S_VERSION, objects

CONTROL = Pod("corral-system", {"app.kubernetes.io/name": "corral-control",
                                "app.kubernetes.io/part-of": "corral"})
FALCO = Pod("falco", {"app.kubernetes.io/name": "falco"})
SHIPPER = Pod("logging", {"app.kubernetes.io/name": "fluent-bit"})


def _with_control(policy: Policy, **access: Any) -> Policy:
    spec = policy.spec.model_copy(update={"control": policy.spec.control.model_copy(
        update=access)})
    return policy.model_copy(update={"spec": spec})


def _serve(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "Deployment"
                and o["metadata"]["name"] == "corral-control")


def test_only_falco_the_shipper_and_named_admins_reach_the_control_plane() -> None:
    policy = _with_control(load_policy(EXAMPLE), admin_namespaces=("security-ops",))
    objs = objects(policy, ("network", "gateway", "control"))
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert allowed(objs, FALCO, CONTROL, 8765) and allowed(objs, SHIPPER, CONTROL, 8765)
    assert allowed(objs, Pod("security-ops", {"app": "oncall-shell"}), CONTROL, 8765)
    for intruder in (Pod("default", {"app": "anything"}),  # every namespace passed before
                     Pod("falco", {"app": "not-falco"}),
                     Pod("other", {"app.kubernetes.io/name": "falco"}),
                     Pod("logging", {"app.kubernetes.io/name": "loki"}),
                     Pod("kube-system", {}), Pod("ai-workloads", {"app": "research-agent"})):
        assert not allowed(objs, intruder, CONTROL, 8765), intruder


def test_agents_namespace_is_never_admitted_even_when_named() -> None:
    base = load_policy(EXAMPLE)
    policy = _with_control(base, admin_namespaces=(base.spec.namespace,), log_shipper=None)
    objs = objects(policy, ("network", "gateway", "control"))
    assert not allowed(objs, Pod(base.spec.namespace, {"app": "research-agent"}), CONTROL, 8765)
    none = _with_control(base, falco=base.spec.control.falco.model_copy(
        update={"namespace": base.spec.namespace}), log_shipper=None)
    ingress = next(o for o in objects(none, ("control",))
                   if o["metadata"]["name"] == "corral-control-ingress")
    assert ingress["spec"]["ingress"] == []  # never an empty "from" (= everyone)


def test_serve_runs_with_tls_and_tokens_from_secrets() -> None:
    objs = objects(load_policy(EXAMPLE), ("control",))
    dep = _serve(objs)
    pod = dep["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    parsed = build_parser(args).parse_args(args)  # the rendered flags are serve's own
    assert parsed.tls_cert == "/etc/corral-control/tls/tls.crt"
    assert parsed.client_ca == "/etc/corral-control/tls/ca.crt"
    assert parsed.ingest_token_file == "/etc/corral-control/tokens/ingest.token"
    assert parsed.admin_token_file == "/etc/corral-control/tokens/admin.token"
    assert not parsed.insecure_no_auth
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"tls": "corral-control-tls", "tokens": "corral-control-tokens"}
    probe = pod["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["scheme"] == "HTTPS"


def test_falco_values_mount_the_client_secret_its_http_output_reads() -> None:
    policy = load_policy(EXAMPLE)
    values = yaml.safe_load(compile_falco(policy)[VALUES_FILE].render())
    out = values["falco"]["http_output"]
    assert out["url"].startswith("https://") and out["mtls"] is True
    mounts = values["mounts"]
    # the chart's mounts, in a Pod: schema-valid, and the files http_output names are in them
    probe_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "falco"},
                 "spec": {"containers": [{"name": "falco", "image": "falco",
                                          "volumeMounts": mounts["volumeMounts"]}],
                          "volumes": mounts["volumes"]}}
    kubernetes_validate.validate(probe_pod, K8S_VERSION, strict=True)
    mount_path = mounts["volumeMounts"][0]["mountPath"]
    for key in ("client_cert", "client_key", "ca_cert"):
        assert out[key].startswith(mount_path + "/")
    assert mounts["volumes"][0]["secret"]["secretName"] == \
        policy.spec.control.falco_client_secret
