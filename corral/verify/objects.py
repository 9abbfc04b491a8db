"""Kubernetes objects as ``corral audit`` reads them: loading, label selectors, NetworkPolicy rules.

Input is manifests (YAML or JSON, many documents, ``kind: List`` flattened) or a cluster dump
(``kubectl get -A -o json``). Loading uses libyaml (``CSafeLoader``): a dump of a large cluster is
thousands of objects. Everything below ``load_*`` is pure and works on plain dicts, with the
semantics of the Kubernetes API (``networking.k8s.io/v1`` NetworkPolicy, label selectors).
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from corral.model.ranges import SPECIAL_V4, SPECIAL_V6

MANAGED_BY = "app.kubernetes.io/managed-by"
# Kinds that carry a pod template at spec.template (CronJob: spec.jobTemplate.spec.template).
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
                            "ReplicationController"})
_YAML_SUFFIXES = (".yaml", ".yml", ".json")

Obj = dict[str, Any]


class InputError(ValueError):
    """Input that is not Kubernetes objects; the message names the file and what was expected."""


@dataclass(frozen=True, slots=True)
class Located:
    """One object and where it came from (file path, or ``-`` for stdin)."""

    obj: Obj
    source: str

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        return str(meta(self.obj).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(meta(self.obj).get("namespace", "") or "")

    @property
    def ref(self) -> str:
        """``Kind/namespace/name`` (``Kind/name`` for cluster-scoped objects)."""
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{ns}{self.name}"


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    lab = meta(obj).get("labels")
    return {str(k): str(v) for k, v in lab.items()} if isinstance(lab, Mapping) else {}


# -- loading -------------------------------------------------------------------------------------

def _flatten(doc: Any, source: str) -> Iterator[Located]:
    if doc is None:
        return
    if not isinstance(doc, dict) or "kind" not in doc:
        raise InputError(f"{source}: expected Kubernetes objects (mappings with 'kind'), "
                         f"got {type(doc).__name__}")
    if str(doc["kind"]).endswith("List") and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _flatten(item, source)
        return
    yield Located(doc, source)


def parse_text(text: str, source: str) -> list[Located]:
    """Every object in a YAML/JSON text (multi-document, ``List`` flattened)."""
    try:
        docs = list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not YAML or JSON ({exc})") from None
    return [loc for doc in docs for loc in _flatten(doc, source)]


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _YAML_SUFFIXES)
    if path.is_file():
        return [path]
    raise InputError(f"{path}: no such file or directory (expected manifests or a kubectl dump)")


def load_paths(paths: Iterable[str], skipped: list[str] | None = None) -> list[Located]:
    """Objects from files, folders (``*.yaml``, ``*.yml``, ``*.json`` below it) or ``-`` (stdin).

    A file named explicitly must hold Kubernetes objects; a file found in a folder that does not
    (e.g. the Falco rules ``corral render`` writes next to the manifests) is skipped and its path
    appended to ``skipped``.
    """
    out: list[Located] = []
    for p in paths:
        if p == "-":
            out.extend(parse_text(sys.stdin.read(), "-"))
            continue
        path = Path(p)
        for f in _files(path):
            try:
                out.extend(parse_text(f.read_text(encoding="utf-8"), str(f)))
            except InputError:
                if not path.is_dir():
                    raise
                if skipped is not None:
                    skipped.append(str(f))
    return out


# -- label selectors -----------------------------------------------------------------------------

def _expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op = str(expr.get("key", "")), str(expr.get("operator", ""))
    values = {str(v) for v in expr.get("values") or ()}
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False  # unknown operator: the API server would have refused the object


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """LabelSelector semantics: ``{}`` selects everything; ``None`` (absent) selects nothing."""
    if selector is None:
        return False
    ml = selector.get("matchLabels") or {}
    if any(labels.get(str(k)) != str(v) for k, v in ml.items()):
        return False
    return all(_expression_matches(e, labels) for e in selector.get("matchExpressions") or ())


def selects_all(selector: Mapping[str, Any] | None) -> bool:
    return selector is not None and not selector.get("matchLabels") \
        and not selector.get("matchExpressions")


# -- pods and pod templates ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PodLike:
    """A Pod or the pod template of a workload: what NetworkPolicies select."""

    owner: Located
    labels: dict[str, str]
    spec: Mapping[str, Any]

    @property
    def namespace(self) -> str:
        return self.owner.namespace or "default"


def _template(obj: Obj) -> Mapping[str, Any] | None:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    tpl = spec.get("template")
    return tpl if isinstance(tpl, Mapping) else None


def _owned(obj: Obj) -> bool:
    """True for pods and ReplicaSets/Jobs a controller made (the owner is audited instead)."""
    return any(r.get("controller") for r in meta(obj).get("ownerReferences") or ())


def pods_of(objects: Iterable[Located]) -> list[PodLike]:
    """Pods and workload templates, skipping objects owned by a controller also in the input."""
    objs = list(objects)
    present = {(o.kind, o.namespace, o.name) for o in objs}
    out: list[PodLike] = []
    for o in objs:
        if _owned(o.obj) and _owner_present(o, present):
            continue
        if o.kind == "Pod":
            out.append(PodLike(o, labels_of(o.obj), o.obj.get("spec") or {}))
        elif o.kind in WORKLOAD_KINDS or o.kind == "CronJob":
            tpl = _template(o.obj)
            if tpl is not None:
                out.append(PodLike(o, labels_of(tpl), tpl.get("spec") or {}))
    return out


def _owner_present(o: Located, present: set[tuple[str, str, str]]) -> bool:
    for r in meta(o.obj).get("ownerReferences") or ():
        if r.get("controller") and (str(r.get("kind")), o.namespace, str(r.get("name"))) \
                in present:
            return True
    return False


# -- NetworkPolicy semantics ---------------------------------------------------------------------

def policy_types(np: Mapping[str, Any]) -> set[str]:
    """Effective policyTypes: as written, or Ingress plus Egress when egress rules exist."""
    spec = np.get("spec") or {}
    types = spec.get("policyTypes")
    if types:
        return {str(t) for t in types}
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def is_default_deny(np: Mapping[str, Any], direction: str) -> bool:
    """Selects every pod, governs ``direction`` and allows nothing in it by itself."""
    spec = np.get("spec") or {}
    rules_key = "ingress" if direction == "Ingress" else "egress"
    return selects_all(spec.get("podSelector") or {}) and direction in policy_types(np) \
        and not spec.get(rules_key)


def port_allows(ports: list[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    """Whether a rule's ``ports`` list admits ``port/protocol`` (absent or empty: every port)."""
    if not ports:
        return True
    for p in ports:
        if str(p.get("protocol", "TCP")) != protocol:
            continue
        lo = p.get("port")
        if lo is None:
            return True
        if isinstance(lo, str):  # a named port: matches the container port of that name
            if lo in ("dns", "dns-tcp", "domain"):
                return True
            continue
        hi = p.get("endPort", lo)
        if int(lo) <= port <= int(hi):
            return True
    return False


# Ranges an ipBlock open to "everything" must take out, or pods reach the nodes, the cloud metadata
# service and every private service directly: the SSRF guard's routable internal ranges. (Loopback
# is left out: NetworkPolicy never governs a pod's own loopback.)
_SENSITIVE_KINDS = frozenset({"private", "link_local", "cgnat"})
SENSITIVE_V4 = tuple(ipaddress.ip_network(c) for c, kind in SPECIAL_V4 if kind in _SENSITIVE_KINDS)
SENSITIVE_V6 = tuple(ipaddress.ip_network(c) for c, kind in SPECIAL_V6 if kind in _SENSITIVE_KINDS)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidr(text: object) -> Network | None:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        return None


def uncovered_sensitive(block: Mapping[str, Any]) -> list[Network]:
    """Sensitive ranges an ipBlock reaches that its ``except`` list does not take out."""
    cidr = parse_cidr(block.get("cidr"))
    if cidr is None:
        return []
    excepts = [e for e in (parse_cidr(x) for x in block.get("except") or ()) if e is not None]
    ranges = SENSITIVE_V4 if cidr.version == 4 else SENSITIVE_V6
    out: list[Network] = []
    for r in ranges:
        if not cidr.overlaps(r):
            continue
        if not any(e.version == r.version and r.subnet_of(e) for e in excepts):  # type: ignore[arg-type]  # version checked first
            out.append(r)
    return out
