"""The control plane's objects: ``corral serve`` in its own namespace, with the RBAC it needs to
quarantine (label agent pods, patch the gateway's overlay ConfigMap) and nothing more. Pure.

Where it runs is read from ``spec.runtime.control_url`` (the address Falco posts to), so the
Falco values and the Service can never disagree: ``https://<service>.<namespace>.svc:<port>/...``.
A control URL outside the cluster renders nothing here.

Authentication end to end (``spec.control``): serve runs HTTPS with the certificate of the
``tls_secret``, accepts ingest from client certificates its CA signed (Falco's http_output
``mtls``, see ``falco.values_document``) or with the ingest token, and admin calls only with the
admin token (both from ``tokens_secret``). The Secrets are referenced, never rendered. The
NetworkPolicy admits Falco's pods, the log shipper and the named admin namespaces, nothing else.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from corral.compile import k8s
from corral.compile.gateway import (
    ADMIN_SERVICE,
    CONFIG_DIR,
    OVERLAY_NAME,
    POLICY_FILE,
    UID,
    policy_document,
)
from corral.compile.network import dns_peer, dns_ports, psa_labels
from corral.compile.output import Files, manifest
from corral.model.policy import Policy

NAME = "corral-control"
STATE_DIR = "/var/lib/corral"
TLS_DIR = "/etc/corral-control/tls"  # tls.crt, tls.key, ca.crt from spec.control.tls_secret
TOKENS_DIR = "/etc/corral-control/tokens"  # ingest.token, admin.token from tokens_secret
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "corral"}
_IN_CLUSTER = re.compile(
    r"^https?://(?P<svc>[a-z0-9-]+)\.(?P<ns>[a-z0-9-]+)\.svc(?:\.cluster\.local)?(?::(?P<port>\d+))?/")


def location(policy: Policy) -> tuple[str, str, int] | None:
    """(service, namespace, port) of the control plane, when Falco posts to an in-cluster URL."""
    m = _IN_CLUSTER.match(policy.spec.runtime.control_url)
    if m is None:
        return None
    return m["svc"], m["ns"], int(m["port"] or 80)


def compile_control(policy: Policy) -> Files:
    loc = location(policy)
    if loc is None:
        return {}
    svc, ns, port = loc
    return {
        "00-namespace.yaml": manifest(k8s.obj("v1", "Namespace", k8s.meta(
            ns, policy=policy.metadata.name, labels=psa_labels()))),
        "10-rbac.yaml": manifest(*rbac(policy, ns)),
        "20-configmap.yaml": manifest(k8s.obj(
            "v1", "ConfigMap", _meta(policy, ns, f"{NAME}-policy"),
            data={POLICY_FILE: policy_document(policy)})),
        "30-pvc.yaml": manifest(k8s.obj("v1", "PersistentVolumeClaim", _meta(policy, ns), spec={
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}})),
        "40-deployment.yaml": manifest(deployment(policy, ns, port)),
        "50-service.yaml": manifest(k8s.obj("v1", "Service", _meta(policy, ns, svc), spec={
            "selector": dict(LABELS),
            "ports": [{"name": "https", "port": port, "targetPort": port, "protocol": "TCP"}]})),
        "60-networkpolicy.yaml": manifest(
            _np(policy, ns, "default-deny-all", {"podSelector": {},
                                                  "policyTypes": ["Ingress", "Egress"]}),
            _np(policy, ns, "allow-dns", {"podSelector": {}, "policyTypes": ["Egress"],
                                          "egress": [{"to": [dns_peer(policy)],
                                                      "ports": dns_ports()}]}),
            ingress_policy(policy, ns, port),
            egress_policy(policy, ns)),
    }


def _meta(policy: Policy, ns: str, name: str = NAME, **kw: Any) -> dict[str, Any]:
    return k8s.meta(name, ns, policy=policy.metadata.name, **kw)


def _role(policy: Policy, ns: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return k8s.obj("rbac.authorization.k8s.io/v1", "Role", _meta(policy, ns), rules=rules)


def _binding(policy: Policy, ns: str, sa_ns: str) -> dict[str, Any]:
    return k8s.obj("rbac.authorization.k8s.io/v1", "RoleBinding", _meta(policy, ns),
                   roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
                   subjects=[{"kind": "ServiceAccount", "name": NAME, "namespace": sa_ns}])


def rbac(policy: Policy, ns: str) -> list[dict[str, Any]]:
    """Label pods in the agents' namespace; patch only the overlay ConfigMap of the gateway."""
    agents_ns, gw_ns = policy.spec.namespace, policy.spec.gateway.namespace
    return [
        k8s.obj("v1", "ServiceAccount", _meta(policy, ns)),
        _role(policy, agents_ns, [{"apiGroups": [""], "resources": ["pods"],
                                   "verbs": ["get", "list", "patch"]}]),
        _binding(policy, agents_ns, ns),
        _role(policy, gw_ns, [{"apiGroups": [""], "resources": ["configmaps"],
                               "resourceNames": [OVERLAY_NAME], "verbs": ["get", "patch"]}]),
        _binding(policy, gw_ns, ns),
    ]


def deployment(policy: Policy, ns: str, port: int) -> dict[str, Any]:
    gw = policy.spec.gateway
    container = {
        "name": "serve",
        "image": gw.image,
        "args": ["serve", "-f", f"{CONFIG_DIR}/{POLICY_FILE}", "--listen", f"0.0.0.0:{port}",
                 "--state", STATE_DIR, "--overlay-configmap", f"{gw.namespace}/{OVERLAY_NAME}",
                 "--gateway-admin",
                 f"http://{ADMIN_SERVICE}.{gw.namespace}.svc:{gw.admin_port}",
                 "--tls-cert", f"{TLS_DIR}/tls.crt", "--tls-key", f"{TLS_DIR}/tls.key",
                 "--client-ca", f"{TLS_DIR}/ca.crt",
                 "--ingest-token-file", f"{TOKENS_DIR}/ingest.token",
                 "--admin-token-file", f"{TOKENS_DIR}/admin.token"],
        "ports": [{"name": "https", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": port, "scheme": "HTTPS"},
                           "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port, "scheme": "HTTPS"},
                          "periodSeconds": 10},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                      "limits": {"cpu": "2", "memory": "1Gi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "policy", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "state", "mountPath": STATE_DIR},
                         {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                         {"name": "tokens", "mountPath": TOKENS_DIR, "readOnly": True}],
    }
    access = policy.spec.control
    return k8s.obj("apps/v1", "Deployment", _meta(policy, ns, labels=dict(LABELS)), spec={
        # One writer of the SQLite store and the sink queues: never two pods at once.
        "replicas": 1,
        "strategy": {"type": "Recreate"},
        "selector": {"matchLabels": dict(LABELS)},
        "template": {"metadata": {"labels": dict(LABELS)}, "spec": {
            "serviceAccountName": NAME,
            "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "fsGroup": UID,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [{"name": "policy", "configMap": {"name": f"{NAME}-policy"}},
                        {"name": "state", "persistentVolumeClaim": {"claimName": NAME}},
                        _secret_volume("tls", access.tls_secret),
                        _secret_volume("tokens", access.tokens_secret)],
        }},
    })


def _np(policy: Policy, ns: str, name: str, spec: dict[str, Any],
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return k8s.obj("networking.k8s.io/v1", "NetworkPolicy",
                   _meta(policy, ns, name, annotations=annotations), spec=spec)


def _secret_volume(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": 0o440}}


def ingress_policy(policy: Policy, ns: str, port: int) -> dict[str, Any]:
    """Ingest only from Falco's pods and the log shipper; admin only from the namespaces
    ``spec.control.admin_namespaces`` names. The agents' namespace is never one of them."""
    access = policy.spec.control
    peers = [peer for peer in (access.falco, access.log_shipper) if peer is not None]
    sources: list[dict[str, Any]] = [
        {"namespaceSelector": k8s.namespace_selector(p.namespace),
         "podSelector": {"matchLabels": dict(p.selector)}} for p in peers
        if p.namespace != policy.spec.namespace]
    admins = [n for n in access.admin_namespaces if n != policy.spec.namespace]
    if admins:
        sources.append({"namespaceSelector": {"matchExpressions": [
            {"key": k8s.NS_NAME_LABEL, "operator": "In", "values": sorted(admins)}]}})
    return _np(policy, ns, f"{NAME}-ingress", {
        "podSelector": {"matchLabels": dict(LABELS)},
        "policyTypes": ["Ingress"],
        # an empty "from" would admit everyone: no peers means no ingress rule at all
        "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": port}]}]
        if sources else []})


def sink_ports(policy: Policy) -> list[tuple[str, int]]:
    """(protocol, port) of every configured sink, plus the Kubernetes API (443, 6443)."""
    found = {("TCP", 443), ("TCP", 6443)}
    for sink in policy.spec.response.sinks:
        if sink.type == "syslog" and sink.port is not None:
            found.add((sink.transport.upper(), sink.port))
        elif sink.url:
            url = urlsplit(sink.url)
            found.add(("TCP", url.port or (443 if url.scheme == "https" else 80)))
    return sorted(found)


def egress_policy(policy: Policy, ns: str) -> dict[str, Any]:
    """The gateway's admin port (quarantine), and the API server and sinks on their ports only.

    Sinks and the API server are reached by address, often private ones, so the block cannot
    exclude private ranges; it excludes link-local (cloud metadata) and says why for the audit.
    """
    gw = policy.spec.gateway
    return _np(policy, ns, f"{NAME}-egress", {
        "podSelector": {"matchLabels": dict(LABELS)},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"namespaceSelector": k8s.namespace_selector(gw.namespace),
                     "podSelector": {"matchLabels": dict(k8s.GATEWAY_POD_LABELS)}}],
             "ports": [{"protocol": "TCP", "port": gw.admin_port}]},
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}},
                    {"ipBlock": {"cidr": "::/0", "except": ["fe80::/10"]}}],
             "ports": [{"protocol": proto, "port": p} for proto, p in sink_ports(policy)]},
        ]}, annotations={"corral.dev/audit-accept": (
            "ipblock-everything: the Kubernetes API server and the incident sinks are reached "
            "by address on their own ports only; cloud metadata is excluded")})
