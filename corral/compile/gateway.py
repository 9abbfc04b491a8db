"""The egress gateway's own objects: Namespace, ConfigMap with the normalised policy, Deployment,
Service (one port per agent), PodDisruptionBudget and NetworkPolicies. Pure.

The ConfigMap carries the policy in the same format ``corral gateway -f`` reads, normalised, so the
gateway in the cluster and ``corral up`` on a laptop run the very same document. Pods are not
restarted when it changes: the gateway watches the mounted file and reloads without dropping
tunnels, which a checksum annotation (the usual Helm trick) would defeat.
"""

from __future__ import annotations

from typing import Any

from corral.compile import k8s
from corral.compile.network import dns_peer, dns_ports, psa_labels
from corral.compile.output import Files, manifest, to_yaml
from corral.model import records
from corral.model.policy import Policy
from corral.model.ranges import SPECIAL_V4, SPECIAL_V6

CONFIG_DIR = "/etc/corral"
POLICY_FILE = "policy.yaml"
NAME = "corral-gateway"
OVERLAY_NAME = f"{NAME}-overlay"
OVERLAY_DIR = "/etc/corral-overlay"
OVERLAY_FILE = "overlay.json"
STATE_DIR = "/var/lib/corral"  # emptyDir: admin API quarantine changes survive a restart
STATE_FILE = "quarantine.json"
UID = 65532  # distroless "nonroot"


def compile_gateway(policy: Policy) -> Files:
    cm = config_map(policy)
    return {
        "00-namespace.yaml": manifest(gateway_namespace(policy)),
        "10-serviceaccount.yaml": manifest(service_account(policy)),
        "20-configmap.yaml": manifest(cm, overlay_config_map(policy)),
        "30-deployment.yaml": manifest(deployment(policy)),
        "40-service.yaml": manifest(service(policy), admin_service(policy)),
        "50-pdb.yaml": manifest(pdb(policy)),
        "60-networkpolicy.yaml": manifest(default_deny(policy), ingress_policy(policy),
                                          egress_policy(policy)),
    }


def policy_document(policy: Policy) -> str:
    return to_yaml(policy.dump())


def policy_version(policy: Policy) -> str:
    return records.policy_version(policy_document(policy).encode())


def _meta(policy: Policy, name: str = NAME, **kw: Any) -> dict[str, Any]:
    return k8s.meta(name, policy.spec.gateway.namespace, policy=policy.metadata.name, **kw)


def gateway_namespace(policy: Policy) -> dict[str, Any]:
    return k8s.obj("v1", "Namespace", k8s.meta(policy.spec.gateway.namespace,
                                                policy=policy.metadata.name, labels=psa_labels()))


def service_account(policy: Policy) -> dict[str, Any]:
    return k8s.obj("v1", "ServiceAccount", _meta(policy), automountServiceAccountToken=False)


def config_map(policy: Policy) -> dict[str, Any]:
    return k8s.obj("v1", "ConfigMap", _meta(policy, f"{NAME}-policy",
                                            annotations={"corral.dev/policy-version":
                                                         policy_version(policy)}),
                   data={POLICY_FILE: policy_document(policy)})


def overlay_config_map(policy: Policy) -> dict[str, Any]:
    """The quarantine overlay: written by the control plane, read (watched) by the gateway.

    Rendered empty so it exists; GitOps tools must create it once and then leave its data to the
    control plane (Flux: the annotation below; Argo CD: ignoreDifferences on /data).
    """
    return k8s.obj("v1", "ConfigMap", _meta(
        policy, OVERLAY_NAME, annotations={"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"}),
        data={OVERLAY_FILE: '{"quarantined": []}'})


def _container_ports(policy: Policy) -> list[dict[str, Any]]:
    ports = [{"name": f"a-{i}", "containerPort": port, "protocol": "TCP"}
             for i, port in enumerate(policy.spec.listener_ports().values())]
    ports.append({"name": "admin", "containerPort": policy.spec.gateway.admin_port,
                  "protocol": "TCP"})
    return ports


def _probe(path: str, port: int, period: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period,
            "timeoutSeconds": 2, "failureThreshold": 3}


def _control_plane_args(policy: Policy) -> list[str]:
    """The control plane's Service name: the gateway never dials it, whatever the policy."""
    from corral.compile import control  # noqa: PLC0415 - control builds on this module

    loc = control.location(policy)
    if loc is None:
        return []
    name = f"{loc[0]}.{loc[1]}.svc"
    return ["--control-plane", f"{name}.cluster.local", "--control-plane", name]


def _container(policy: Policy) -> dict[str, Any]:
    gw = policy.spec.gateway
    return {
        "name": "gateway",
        "image": gw.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["gateway", "-f", f"{CONFIG_DIR}/{POLICY_FILE}", "--listen", "0.0.0.0",
                 "--admin-port", str(gw.admin_port), "--workers", "0", "--log", "-",
                 "--overlay", f"{OVERLAY_DIR}/{OVERLAY_FILE}",
                 "--state", f"{STATE_DIR}/{STATE_FILE}", "--limit-share", str(gw.replicas),
                 *_control_plane_args(policy)],
        "ports": _container_ports(policy),
        "readinessProbe": _probe("/readyz", gw.admin_port, 5),
        "livenessProbe": _probe("/healthz", gw.admin_port, 10),
        "resources": {"requests": gw.resources.requests.model_dump(),
                      "limits": gw.resources.limits.model_dump()},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "policy", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "overlay", "mountPath": OVERLAY_DIR, "readOnly": True},
                         {"name": "state", "mountPath": STATE_DIR},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }


def deployment(policy: Policy) -> dict[str, Any]:
    gw = policy.spec.gateway
    labels = dict(k8s.GATEWAY_POD_LABELS)
    pod_spec = {
        "serviceAccountName": NAME,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "fsGroup": UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 60,
        "containers": [_container(policy)],
        "volumes": [
            {"name": "policy", "configMap": {"name": f"{NAME}-policy"}},
            {"name": "overlay", "configMap": {"name": OVERLAY_NAME, "optional": True}},
            {"name": "state", "emptyDir": {"sizeLimit": "1Mi"}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": labels},
        }],
    }
    return k8s.obj("apps/v1", "Deployment", _meta(policy, labels=labels), spec={
        "replicas": gw.replicas,
        "selector": {"matchLabels": labels},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    })


def service(policy: Policy) -> dict[str, Any]:
    ports = [{"name": name, "port": port, "targetPort": port, "protocol": "TCP"}
             for name, port in policy.spec.listener_ports().items()]
    return k8s.obj("v1", "Service", _meta(policy), spec={
        "type": "ClusterIP",
        "selector": dict(k8s.GATEWAY_POD_LABELS),
        "ports": ports,
    })


ADMIN_SERVICE = f"{NAME}-admin"


def admin_service(policy: Policy) -> dict[str, Any]:
    """Headless: its name resolves to every replica, so a quarantine reaches each one at once."""
    port = policy.spec.gateway.admin_port
    return k8s.obj("v1", "Service", _meta(policy, ADMIN_SERVICE), spec={
        "clusterIP": "None",
        "selector": dict(k8s.GATEWAY_POD_LABELS),
        "ports": [{"name": "admin", "port": port, "targetPort": port, "protocol": "TCP"}],
    })


def pdb(policy: Policy) -> dict[str, Any]:
    return k8s.obj("policy/v1", "PodDisruptionBudget", _meta(policy), spec={
        "minAvailable": 1 if policy.spec.gateway.replicas > 1 else 0,
        "selector": {"matchLabels": dict(k8s.GATEWAY_POD_LABELS)},
    })


def _np(policy: Policy, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return k8s.obj("networking.k8s.io/v1", "NetworkPolicy", _meta(policy, name), spec=spec)


def default_deny(policy: Policy) -> dict[str, Any]:
    return _np(policy, "default-deny-all",
               {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})


def ingress_policy(policy: Policy) -> dict[str, Any]:
    """Each listener port admits only its own agent's (unquarantined) pods: port = identity."""
    ports = policy.spec.listener_ports()
    rules: list[dict[str, Any]] = [{
        "from": [{"namespaceSelector": k8s.namespace_selector(policy.spec.namespace),
                  "podSelector": k8s.not_quarantined(agent.selector)}],
        "ports": [{"protocol": "TCP", "port": ports[agent.name]}],
    } for agent in policy.spec.agents]
    # Health, metrics and the quarantine API: from any namespace but the agents' own, so an
    # agent can never lift its own quarantine. Kubelet probes are not subject to NetworkPolicy.
    not_agents = {"matchExpressions": [{"key": k8s.NS_NAME_LABEL, "operator": "NotIn",
                                        "values": [policy.spec.namespace]}]}
    rules.append({"from": [{"namespaceSelector": not_agents}],
                  "ports": [{"protocol": "TCP", "port": policy.spec.gateway.admin_port}]})
    return _np(policy, f"{NAME}-ingress", {
        "podSelector": {"matchLabels": dict(k8s.GATEWAY_POD_LABELS)},
        "policyTypes": ["Ingress"],
        "ingress": rules,
    })


def _public_blocks(policy: Policy) -> list[dict[str, Any]]:
    """The internet minus what the SSRF guard refuses: a second wall under the gateway's own."""
    v4_except = [n for n, _ in SPECIAL_V4 if n != "0.0.0.0/8"]
    v6_except = [n for n, _ in SPECIAL_V6 if n not in ("::/128", "::1/128")]
    blocks: list[dict[str, Any]] = [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": v4_except}},
        {"ipBlock": {"cidr": "::/0", "except": v6_except}},
    ]
    allowed = sorted({str(c) for a in policy.spec.agents for c in a.egress.private_ranges}
                     | {str(e.net) for a in policy.spec.agents for e in a.egress.addresses})
    blocks.extend({"ipBlock": {"cidr": c}} for c in allowed)
    return blocks


def egress_policy(policy: Policy) -> dict[str, Any]:
    """The gateway may resolve names and reach public addresses, plus the private ranges and
    addresses the agents' ``resolve_into`` and address allow entries open."""
    return _np(policy, f"{NAME}-egress", {
        "podSelector": {"matchLabels": dict(k8s.GATEWAY_POD_LABELS)},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [dns_peer(policy)], "ports": dns_ports()},
            {"to": _public_blocks(policy)},
        ],
    })
