"""``corral audit``: over-permissive or missing network policy in manifests or a cluster dump.

Input: objects from ``corral.verify.objects`` (manifests, or ``kubectl get -A -o json``); optionally
the policy, for the checks that need to know the agents (uncovered agent pods) and what corral
would render (drift). Output: ``Finding`` values, each with a stable rule id, the object it is
about and what to do. Pure: the CLI loads input and formats the report (text, JSON, SARIF).

The checks, in order: namespaces without default-deny (ingress and egress separately), policies
that open egress or ingress to everything (no peer, ``0.0.0.0/0`` without private excepts, empty
namespace selectors), pods no policy selects, pods whose egress is restricted without DNS, pods in
the agents' namespace no agent profile covers, and drift from ``render_all(policy)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from corral.compile.output import Manifest
from corral.compile.render import render_all
from corral.model.findings import Level, Rule
from corral.model.findings import to_sarif as sarif_document
from corral.model.policy import Policy
from corral.model.wording import counted
from corral.verify import objects as k
from corral.verify.objects import Located, PodLike

SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("default-deny-ingress-missing", "error", "namespace without default-deny ingress",
         "add a NetworkPolicy with podSelector: {} and policyTypes: [Ingress] and no rules"),
    Rule("default-deny-egress-missing", "error", "namespace without default-deny egress",
         "add a NetworkPolicy with podSelector: {} and policyTypes: [Egress] and no rules"),
    Rule("egress-allows-all", "error", "egress rule without a peer: every destination",
         "name the peers (the gateway, cluster DNS); send external traffic through the gateway"),
    Rule("ingress-allows-all", "warning", "ingress rule without a peer: every source",
         "name the peers allowed to connect"),
    Rule("ipblock-everything", "error", "ipBlock 0.0.0.0/0 or ::/0 reaching private ranges",
         "route egress through the gateway; if a block must stay, except the private, "
         "link-local (metadata) and CGNAT ranges"),
    Rule("empty-namespace-selector", "error", "peer with namespaceSelector: {}: every namespace",
         "select the namespaces by label (kubernetes.io/metadata.name) and the pods by label"),
    Rule("pod-unselected", "error", "pod no NetworkPolicy selects: unrestricted",
         "add a default-deny NetworkPolicy to its namespace"),
    Rule("dns-egress-missing", "warning", "egress restricted without DNS: lookups will time out",
         "allow UDP and TCP 53 to cluster DNS (kube-system, k8s-app: kube-dns)"),
    Rule("agent-uncovered", "error", "pod in the agents' namespace matching no agent profile",
         "add an agent to corral.yaml whose selector matches it, or move it out"),
    Rule("agent-egress-bypasses-gateway", "error",
         "egress from the agents' namespace straight to an IP block: around the gateway",
         "remove the ipBlock and allow the destination in the agent's egress.allow; if it must "
         "stay direct, list it in spec.runtime.direct_cidrs so Falco expects it"),
    Rule("drift-missing", "error", "object corral renders is missing",
         "corral render -f corral.yaml -o out/ && kubectl apply -f out/"),
    Rule("drift-changed", "error", "object corral manages differs from what corral renders",
         "re-apply the rendered manifests; change corral.yaml instead of the object"),
    Rule("drift-stale", "warning", "object managed by corral that corral no longer renders",
         "delete it if the policy no longer needs it"),
)}


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    object: str  # Kind/namespace/name
    source: str  # file, '-' or 'rendered'
    message: str

    @property
    def level(self) -> Level:
        return RULES[self.rule].level

    @property
    def subject(self) -> str:
        return self.object

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "level": self.level, "help": RULES[self.rule].help}


@dataclass(frozen=True, slots=True)
class Inventory:
    """The input, indexed once: policies per namespace, pods, namespaces."""

    objects: tuple[Located, ...]
    policies: dict[str, tuple[Located, ...]]
    pods: tuple[PodLike, ...]
    namespaces: dict[str, Located | None]

    @classmethod
    def build(cls, objs: Iterable[Located]) -> Inventory:
        objs = tuple(objs)
        pols: dict[str, list[Located]] = {}
        for o in objs:
            if o.kind == "NetworkPolicy":
                pols.setdefault(o.namespace or "default", []).append(o)
        pods = tuple(k.pods_of(objs))
        nss: dict[str, Located | None] = {o.name: o for o in objs if o.kind == "Namespace"}
        for ns in [*pols, *(p.namespace for p in pods)]:
            nss.setdefault(ns, None)
        return cls(objs, {n: tuple(v) for n, v in pols.items()}, pods, nss)

    def selecting(self, pod: PodLike) -> list[Located]:
        return [p for p in self.policies.get(pod.namespace, ())
                if k.selector_matches((p.obj.get("spec") or {}).get("podSelector") or {},
                                      pod.labels)]


Check = Callable[[Inventory, Policy | None], Iterator[Finding]]


def _ns_ref(inv: Inventory, ns: str) -> tuple[str, str]:
    loc = inv.namespaces.get(ns)
    return (loc.ref, loc.source) if loc else (f"Namespace/{ns}", "(implied)")


def check_default_deny(inv: Inventory, policy: Policy | None) -> Iterator[Finding]:
    for ns in sorted(inv.namespaces):
        pols = inv.policies.get(ns, ())
        ref, src = _ns_ref(inv, ns)
        for direction in ("Ingress", "Egress"):
            if not any(k.is_default_deny(p.obj, direction) for p in pols):
                yield Finding(f"default-deny-{direction.lower()}-missing", ref, src,
                              f"namespace {ns} has no default-deny {direction.lower()} policy: "
                              f"pods no other policy selects for {direction.lower()} are open")


def _rules(np: Located, key: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    if key.capitalize() not in k.policy_types(np.obj):
        return
    for i, rule in enumerate((np.obj.get("spec") or {}).get(key) or ()):
        yield i, rule if isinstance(rule, Mapping) else {}


def _ports_text(rule: Mapping[str, Any]) -> str:
    ports = rule.get("ports") or ()
    if not ports:
        return "on every port"
    return "on " + ", ".join(f"{p.get('protocol', 'TCP')}/{p.get('port', '*')}" for p in ports)


def _all_policies(inv: Inventory) -> Iterator[Located]:
    for ns in sorted(inv.policies):
        yield from inv.policies[ns]


_DIRECTIONS = (("egress", "to", "destination"), ("ingress", "from", "source"))


def check_open_rules(inv: Inventory, policy: Policy | None) -> Iterator[Finding]:
    for np in _all_policies(inv):
        for key, peers_key, what in _DIRECTIONS:
            for i, rule in _rules(np, key):
                peers = rule.get(peers_key) or ()
                where = f"spec.{key}[{i}]"
                if not peers:
                    yield Finding(f"{key}-allows-all", np.ref, np.source,
                                  f"{where} has no '{peers_key}': every {what} "
                                  f"{_ports_text(rule)}")
                yield from _peer_findings(np, where, peers_key, peers, rule.get("ports"))


def _peer_findings(np: Located, where: str, peers_key: str, peers: Iterable[Mapping[str, Any]],
                   ports: object) -> Iterator[Finding]:
    for j, peer in enumerate(peers):
        at = f"{where}.{peers_key}[{j}]"
        block = peer.get("ipBlock")
        if isinstance(block, Mapping):
            cidr = k.parse_cidr(block.get("cidr"))
            open_ranges = k.uncovered_sensitive(block)
            if cidr is not None and cidr.prefixlen == 0 and open_ranges:
                yield Finding("ipblock-everything", np.ref, np.source,
                              f"{at}.ipBlock {cidr} without except for "
                              + ", ".join(str(r) for r in open_ranges))
        ns_sel = peer.get("namespaceSelector")
        if not ports and ns_sel is not None and k.selects_all(ns_sel) \
                and k.selects_all(peer.get("podSelector") or {}):
            yield Finding("empty-namespace-selector", np.ref, np.source,
                          f"{at} has namespaceSelector: {{}}, no pod selector and no ports: "
                          "every port of every pod in every namespace")


def check_unselected(inv: Inventory, policy: Policy | None) -> Iterator[Finding]:
    for pod in inv.pods:
        if not inv.selecting(pod):
            yield Finding("pod-unselected", pod.owner.ref, pod.owner.source,
                          f"no NetworkPolicy in {pod.namespace} selects labels "
                          f"{_labels_text(pod.labels)}: ingress and egress are unrestricted")


def _labels_text(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{a}={b}" for a, b in sorted(labels.items())) + "}"


def _allows_dns(policies: Iterable[Located]) -> bool:
    for np in policies:
        for _, rule in _rules(np, "egress"):
            if k.port_allows(rule.get("ports"), 53, "UDP"):
                return True
    return False


def check_dns(inv: Inventory, policy: Policy | None) -> Iterator[Finding]:
    for pod in inv.pods:
        egress = [p for p in inv.selecting(pod) if "Egress" in k.policy_types(p.obj)]
        if egress and not _allows_dns(egress):
            yield Finding("dns-egress-missing", pod.owner.ref, pod.owner.source,
                          "egress is restricted by " + ", ".join(p.name for p in egress)
                          + " and none allows UDP/53: name lookups will time out")


def check_agents(inv: Inventory, policy: Policy | None) -> Iterator[Finding]:
    if policy is None:
        return
    selectors = [a.selector for a in policy.spec.agents]
    for pod in inv.pods:
        if pod.namespace != policy.spec.namespace:
            continue
        if not any(all(pod.labels.get(a) == b for a, b in sel.items()) for sel in selectors):
            yield Finding("agent-uncovered", pod.owner.ref, pod.owner.source,
                          f"labels {_labels_text(pod.labels)} match no agent selector in the "
                          "policy: its egress gets no gateway listener and no process rules")


def check_agent_bypass(inv: Inventory, policy: Policy | None) -> Iterator[Finding]:
    """ipBlocks in the agents' namespace: agents reach those addresses without the gateway's
    decision, SSRF guard or log (declared ``spec.runtime.direct_cidrs`` excepted)."""
    if policy is None:
        return
    declared = policy.spec.runtime.direct_cidrs
    for np in inv.policies.get(policy.spec.namespace, ()):
        for i, rule in _rules(np, "egress"):
            for j, peer in enumerate(rule.get("to") or ()):
                cidr = k.parse_cidr((peer.get("ipBlock") or {}).get("cidr"))
                if cidr is None or any(cidr.version == d.version and cidr.subnet_of(d)
                                       for d in declared):
                    continue
                yield Finding("agent-egress-bypasses-gateway", np.ref, np.source,
                              f"spec.egress[{i}].to[{j}].ipBlock {cidr} {_ports_text(rule)}: "
                              "agent pods reach it directly, unseen by the gateway")


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    m = k.meta(obj)
    return group, str(obj.get("kind", "")), str(m.get("namespace", "") or ""), str(m.get("name"))


def rendered_objects(policy: Policy) -> list[Located]:
    """Every Kubernetes object ``corral render`` would write for ``policy``."""
    out: list[Located] = []
    for folder, files in render_all(policy).items():
        for path, f in files.items():
            if isinstance(f, Manifest):
                out.extend(Located(o, f"rendered:{folder}/{path}") for o in f.objects)
    return out


def differences(want: Any, have: Any, path: str = "") -> list[str]:
    """Paths where ``have`` does not carry ``want`` (server-added fields are ignored)."""
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            return [path or "."]
        return [d for key, val in want.items()
                for d in differences(val, have.get(key), f"{path}.{key}" if path else str(key))]
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [path]
        return [d for i, (w, h) in enumerate(zip(want, have, strict=True))
                for d in differences(w, h, f"{path}[{i}]")]
    return [] if str(want) == str(have) or (want is None and have is None) else [path]


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    m = k.meta(obj)
    body = {key: v for key, v in obj.items() if key not in ("metadata", "status", "apiVersion")}
    return {**body, "metadata": {key: m[key] for key in ("labels", "annotations") if key in m}}


def check_drift(inv: Inventory, policy: Policy | None) -> Iterator[Finding]:
    if policy is None:
        return
    want = {_identity(o.obj): o for o in rendered_objects(policy)}
    kinds_in_input = {o.kind for o in inv.objects} | {"Namespace", "NetworkPolicy"}
    have = {_identity(o.obj): o for o in inv.objects}
    for ident, w in want.items():
        if w.kind not in kinds_in_input:
            continue
        h = have.get(ident)
        if h is None:
            yield Finding("drift-missing", w.ref, w.source, f"{w.ref} is not in the input")
            continue
        diff = differences(_comparable(w.obj), _comparable(h.obj))
        if diff:
            yield Finding("drift-changed", h.ref, h.source,
                          f"differs from the rendered object at {', '.join(diff[:5])}"
                          + (f" (+{len(diff) - 5} more)" if len(diff) > 5 else ""))
    for ident, h in have.items():
        if ident not in want and k.labels_of(h.obj).get(k.MANAGED_BY) == "corral":
            yield Finding("drift-stale", h.ref, h.source,
                          f"{h.ref} is labelled managed-by corral but corral does not render it")


CHECKS: tuple[Check, ...] = (
    check_default_deny, check_open_rules, check_unselected, check_dns, check_agents,
    check_agent_bypass, check_drift,
)


def audit(objs: Iterable[Located], policy: Policy | None = None, *,
          include_system: bool = False) -> list[Finding]:
    """Every finding of every check, in check order."""
    keep = [o for o in objs
            if include_system or (o.namespace or o.name) not in SYSTEM_NAMESPACES
            or o.kind not in ("Namespace", "NetworkPolicy", "Pod", *k.WORKLOAD_KINDS, "CronJob")]
    inv = Inventory.build(keep)
    accepted = {o.ref: accepted_rules(o.obj) for o in inv.objects}
    return [f for check in CHECKS for f in check(inv, policy)
            if f.rule not in accepted.get(f.object, ())]


ACCEPT_ANNOTATION = "corral.dev/audit-accept"


def accepted_rules(obj: Mapping[str, Any]) -> frozenset[str]:
    """Rules an object's owner accepted with a reason: ``rule-id: why; other-rule: why``.

    A rule named without a reason is not accepted: the annotation must say why.
    """
    text = str((k.meta(obj).get("annotations") or {}).get(ACCEPT_ANNOTATION, ""))
    out = set()
    for item in text.split(";"):
        rule, sep, why = item.partition(":")
        if sep and why.strip() and rule.strip() in RULES:
            out.add(rule.strip())
    return frozenset(out)


# -- reports -------------------------------------------------------------------------------------

def to_sarif(findings: Iterable[Finding], version: str) -> dict[str, Any]:
    """SARIF 2.1.0, one run, every rule described (code-scanning UIs show rule help)."""
    return sarif_document(findings, RULES, "corral-audit", version)


def to_text(findings: list[Finding], checked: int) -> str:
    lines = [f"{f.level}: {f.rule}: {f.object}: {f.message}\n  fix: {RULES[f.rule].help}"
             for f in findings]
    errors = sum(f.level == "error" for f in findings)
    lines.append(f"{counted(checked, 'object')} audited: {counted(errors, 'error')}, "
                 f"{counted(len(findings) - errors, 'warning')}")
    return "\n".join(lines) + "\n"
