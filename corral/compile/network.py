"""Layer 1, zero-trust network: Namespace, default deny, DNS, per-agent egress to its own gateway
port, quarantine, and optionally Cilium FQDN policies. Pure: ``compile_network(policy) -> Files``.

Reads: the policy. Feeds: ``corral render`` (folder ``network/``) and ``corral audit`` (drift).
"""

from __future__ import annotations

from typing import Any

from corral.compile import k8s
from corral.compile.output import Files, manifest
from corral.model.policy import QUARANTINE_LABEL, Agent, Policy

PSA_LEVEL = "restricted"


def compile_network(policy: Policy) -> Files:
    spec = policy.spec
    ports = spec.listener_ports()
    files: Files = {
        "00-namespace.yaml": manifest(agents_namespace(policy)),
        "10-default-deny.yaml": manifest(default_deny(policy)),
        "11-allow-dns.yaml": manifest(allow_dns(policy)),
        "12-quarantine.yaml": manifest(quarantine(policy)),
    }
    for agent in spec.agents:
        files[f"20-egress-{agent.name}.yaml"] = manifest(
            agent_egress(policy, agent, ports[agent.name]))
    if spec.network.cilium:
        for agent in spec.agents:
            files[f"30-cilium-{agent.name}.yaml"] = manifest(
                cilium_policy(policy, agent, ports[agent.name]))
    return files


def psa_labels(level: str = PSA_LEVEL, version: str = "latest") -> dict[str, str]:
    """Pod Security Admission labels: ``level`` and its ``version`` in every mode."""
    labels = {}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = level
        labels[f"pod-security.kubernetes.io/{mode}-version"] = version
    return labels


def agents_namespace(policy: Policy) -> dict[str, Any]:
    """The agents' Namespace: PSA at ``spec.admission.pod_security`` (the level and version the
    admission engines enforce), else restricted at the cluster's latest."""
    pss = policy.spec.admission.pod_security
    level, version = ("restricted", "latest") if pss is None else (pss.level, pss.version)
    labels = {"security-tier": level, **psa_labels(level, version)}
    return k8s.obj("v1", "Namespace", k8s.meta(policy.spec.namespace, policy=policy.metadata.name,
                                                labels=labels))


def _np(policy: Policy, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return k8s.obj("networking.k8s.io/v1", "NetworkPolicy",
                   k8s.meta(name, namespace, policy=policy.metadata.name), spec=spec)


def default_deny(policy: Policy) -> dict[str, Any]:
    return _np(policy, "default-deny-all", policy.spec.namespace,
               {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})


def dns_peer(policy: Policy) -> dict[str, Any]:
    dns = policy.spec.dns
    return {"namespaceSelector": k8s.namespace_selector(dns.namespace),
            "podSelector": {"matchLabels": dict(dns.selector)}}


def dns_ports() -> list[dict[str, Any]]:
    return [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def allow_dns(policy: Policy) -> dict[str, Any]:
    return _np(policy, "allow-dns", policy.spec.namespace, {
        "podSelector": k8s.not_quarantined(),
        "policyTypes": ["Egress"],
        "egress": [{"to": [dns_peer(policy)], "ports": dns_ports()}],
    })


def quarantine(policy: Policy) -> dict[str, Any]:
    """Quarantined pods are selected with no rule: all their ingress and egress is denied."""
    return _np(policy, "corral-quarantine", policy.spec.namespace, {
        "podSelector": {"matchLabels": {QUARANTINE_LABEL: "true"}},
        "policyTypes": ["Ingress", "Egress"],
    })


def agent_egress(policy: Policy, agent: Agent, port: int) -> dict[str, Any]:
    """The agent's pods may reach only their own gateway listener port."""
    gw = policy.spec.gateway
    return _np(policy, f"egress-{agent.name}", policy.spec.namespace, {
        "podSelector": k8s.not_quarantined(agent.selector),
        "policyTypes": ["Egress"],
        "egress": [{
            "to": [{"namespaceSelector": k8s.namespace_selector(gw.namespace),
                    "podSelector": {"matchLabels": dict(k8s.GATEWAY_POD_LABELS)}}],
            "ports": [{"protocol": "TCP", "port": port}],
        }],
    })


def _fqdn_selectors(agent: Agent) -> list[dict[str, str]]:
    out = []
    for p in agent.egress.allow:
        # Cilium's "**." prefix matches any depth below the name, like corral's "*.".
        out.append({"matchPattern": f"**.{p.name}"} if p.wildcard else {"matchName": p.name})
    return out


def cilium_policy(policy: Policy, agent: Agent, port: int) -> dict[str, Any]:
    """CiliumNetworkPolicy: gateway port and DNS, plus toFQDNs for enforce-mode allowlists.

    Cilium's FQDN rules cannot express deny entries, so deny patterns stay the gateway's job;
    learn-mode agents get no FQDN rule (everything goes through the gateway to be logged).
    """
    gw = policy.spec.gateway
    dns = policy.spec.dns
    egress: list[dict[str, Any]] = [
        {
            "toEndpoints": [{"matchLabels": {
                "k8s:io.kubernetes.pod.namespace": dns.namespace,
                **{f"k8s:{k}": v for k, v in dns.selector.items()}}}],
            "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}],
                         "rules": {"dns": [{"matchPattern": "*"}]}}],
        },
        {
            "toEndpoints": [{"matchLabels": {
                "k8s:io.kubernetes.pod.namespace": gw.namespace,
                **{f"k8s:{k}": v for k, v in k8s.GATEWAY_POD_LABELS.items()}}}],
            "toPorts": [{"ports": [{"port": str(port), "protocol": "TCP"}]}],
        },
    ]
    if agent.egress.mode == "enforce" and agent.egress.allow:
        by_port: dict[tuple[int, ...], list[dict[str, str]]] = {}
        for pat, sel in zip(agent.egress.allow, _fqdn_selectors(agent), strict=True):
            key: tuple[int, ...] = (pat.port,) if pat.port is not None else (443, 80)
            by_port.setdefault(key, []).append(sel)
        for key, sels in sorted(by_port.items()):
            egress.append({
                "toFQDNs": sels,
                "toPorts": [{"ports": [{"port": str(p), "protocol": "TCP"} for p in key]}],
            })
    return k8s.obj("cilium.io/v2", "CiliumNetworkPolicy",
                   k8s.meta(f"corral-{agent.name}", policy.spec.namespace,
                            policy=policy.metadata.name),
                   spec={
                       "endpointSelector": {
                           "matchLabels": {**agent.selector},
                           "matchExpressions": [{"key": QUARANTINE_LABEL, "operator": "NotIn",
                                                 "values": ["true"]}],
                       },
                       "egress": egress,
                   })
