"""A fleet for the maintenance tests: a policy and its state a quarter ago, manifests, a cluster
dump with planted issues, a behaviour store and a control-plane store.

NOW = 2026-12-01T09:00Z. Planted:
- coder's Deployment runs ``ghcr.io/corral-dev/coder:latest`` (mutable tag);
- a pod ``debug-shell`` in ai-workloads, labelled as the coder, runs
  ``docker.io/library/python:3.12`` (unapproved registry, declared by no manifest);
- Falco saw ``docker.io/kalilinux/kali-rolling`` in a coder pod (not declared);
- research runs by digest (clean); the gateway and CoreDNS run outside the agents' namespace.
Behaviour: research uses api.openai.com and two names below ``*.weather.gov``, never
``en.wikipedia.org``; research ran ``python3`` and ``curl`` (not listed), never ``node``; coder
(learn mode since before the quarter) runs python3, pip and git, never npm.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from corral.model import records as rec
from corral.store.aggregates import AggregateStore

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RESEARCH_DIGEST = "sha256:" + "a1" * 32
CODER_DIGEST = "sha256:" + "c0" * 32

POLICY = """\
# corral policy: the maintenance tests edit it; comments must survive.
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata:
  name: prod
spec:
  namespace: ai-workloads
  registries:
    - registry.example.com/agents/
    - ghcr.io/corral-dev/
  admission:
    controls:
      registries:
        exempt_images:
          - registry.example.com/debug/*   # break-glass debug images
      run_as_non_root:
        exempt_images:
          - ghcr.io/corral-dev/coder:latest
  runtime:
    exceptions:
      - name: coder_cc1              # compilers the coder runs
        rule: unexpected_process
        agents: [coder]
        when: {proc.name: cc1}
      - name: research_curl
        rule: unexpected_process
        agents: [research]
        when: {proc.name: curl}
  agents:
    # Research agent, in production.
    - name: research
      selector: {app: research-agent}
      egress:
        mode: enforce
        allow:
          - api.openai.com        # the model API
          - "*.weather.gov"       # forecasts
          - en.wikipedia.org      # retired?
        deny:
          - "*.pastebin.com"
        rate: {requests_per_minute: 600}
        quota: {bytes_out_per_hour: 50Mi}
      processes: [python3, node]
    # Coding agent, still being profiled.
    - name: coder
      selector: {app: coding-agent}
      egress:
        mode: learn
        allow:
          - pypi.org
          - files.pythonhosted.org
          - github.com
          - internal-git.corp.example:8443
        allow_cidrs:
          - 10.96.0.0/12
      processes: [python3, pip, git, npm]
"""

POLICY_LAST_QUARTER = """\
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata:
  name: prod
spec:
  namespace: ai-workloads
  registries:
    - registry.example.com/agents/
  agents:
    - name: research
      selector: {app: research-agent}
      egress:
        mode: enforce
        allow:
          - api.openai.com
          - forecast.weather.gov
        deny:
          - "*.pastebin.com"
      processes: [python3, node]
    - name: coder
      selector: {app: coding-agent}
      egress:
        mode: learn
        allow:
          - pypi.org
          - files.pythonhosted.org
      processes: [python3, pip, git]
"""


def _deployment(name: str, labels: dict[str, str], image: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "ai-workloads"},
            "spec": {"selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "agent", "image": image}]}}}}


MANIFESTS = [
    _deployment("research", {"app": "research-agent"},
                f"registry.example.com/agents/research:1.4@{RESEARCH_DIGEST}"),
    _deployment("coder", {"app": "coding-agent"}, "ghcr.io/corral-dev/coder:latest"),
]


def write_manifests(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for obj in MANIFESTS:
        (folder / f"{obj['metadata']['name']}.yaml").write_text(json.dumps(obj, indent=2))
    return folder


def pod(name: str, ns: str, labels: dict[str, str], image: str,  # noqa: PLR0917 - a builder
         image_id: str, owner: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels,
                            "uid": f"uid-{name}", "creationTimestamp": "2026-11-02T08:00:00Z"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": owner, "uid": f"uid-{owner}", "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "main", "image": image}], "nodeName": "node-1"},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "main", "image": image, "imageID": image_id, "ready": True,
                 "restartCount": 0}]}}


def cluster_dump() -> dict[str, Any]:
    """``kubectl get pods,deployments -A -o json`` of the fleet, issues planted."""
    research = f"registry.example.com/agents/research:1.4@{RESEARCH_DIGEST}"
    items = [
        pod("research-7d9f-abcde", "ai-workloads", {"app": "research-agent"}, research,
             f"registry.example.com/agents/research@{RESEARCH_DIGEST}", "research-7d9f"),
        pod("coder-5c6b-fghij", "ai-workloads", {"app": "coding-agent"},
             "ghcr.io/corral-dev/coder:latest", f"ghcr.io/corral-dev/coder@{CODER_DIGEST}",
             "coder-5c6b"),
        pod("debug-shell", "ai-workloads", {"app": "coding-agent"},
             "python:3.12", "docker.io/library/python@sha256:" + "9e" * 32),
        pod("corral-gateway-6f7c-klmno", "egress-gateway", {"app": "corral-gateway"},
             "ghcr.io/corral-dev/corral:0.1.0", "ghcr.io/corral-dev/corral@sha256:" + "0d" * 32,
             "corral-gateway-6f7c"),
        pod("coredns-5d78-pqrst", "kube-system", {"k8s-app": "kube-dns"},
             "registry.k8s.io/coredns/coredns:v1.11.1",
             "registry.k8s.io/coredns/coredns@sha256:" + "1c" * 32, "coredns-5d78"),
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items,
            "metadata": {"resourceVersion": ""}}


def write_dump(path: Path) -> Path:
    path.write_text(json.dumps(cluster_dump(), indent=1))
    return path


def _falco(agent_label: str, proc: str, image: str, when: datetime,
           rule: str = "corral: unexpected process") -> dict[str, Any]:
    return {"time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "rule": rule, "priority": "Warning",
            "output": f"unexpected process {proc}", "output_fields": {
                "k8s.ns.name": "ai-workloads", "k8s.pod.name": f"{agent_label}-pod",
                "k8s.pod.labels": f"app:{agent_label}", "proc.name": proc, "proc.pname": "bash",
                "container.image.repository": image, "fd.name": ""}}


def _access(agent: str, host: str, rule: str | None, when: datetime,
            decision: str = "allow") -> dict[str, Any]:
    return {rec.TIME: when.strftime("%Y-%m-%dT%H:%M:%S.000Z"), rec.KIND: rec.KIND_ACCESS,
            rec.AGENT: agent, rec.CLIENT: "10.20.0.10:40000", rec.METHOD: "CONNECT",
            rec.HOST: host, rec.PORT: 443, rec.PATH: None, rec.DECISION: decision,
            rec.REASON: "allowed_by_rule" if decision == "allow" else "not_in_allowlist",
            rec.RULE: rule, rec.RESOLVED: "198.51.100.7:443", rec.SNI: host, rec.BYTES_UP: 900,
            rec.BYTES_DOWN: 9000, rec.DURATION_MS: 40.0, rec.STATUS: 200,
            rec.POLICY_VERSION: "prod-1"}


def behaviour_store(path: Path) -> Path:
    """Ninety days of the fleet's gateway records and Falco events."""
    selectors = {"research": {"app": "research-agent"}, "coder": {"app": "coding-agent"}}
    records, events = [], []
    for back in range(90, 0, -3):
        when = NOW - timedelta(days=back)
        records += [_access("research", "api.openai.com", "api.openai.com", when),
                    _access("research", "forecast.weather.gov", "*.weather.gov", when),
                    _access("research", "alerts.weather.gov", "*.weather.gov", when),
                    _access("coder", "pypi.org", "pypi.org", when),
                    _access("coder", "files.pythonhosted.org", "files.pythonhosted.org", when),
                    _access("coder", "github.com", "github.com", when)]
        events += [_falco("research-agent", "python3", "registry.example.com/agents/research",
                          when),
                   _falco("research-agent", "curl", "registry.example.com/agents/research",
                          when),
                   _falco("coding-agent", "python3", "ghcr.io/corral-dev/coder", when),
                   _falco("coding-agent", "pip", "ghcr.io/corral-dev/coder", when),
                   _falco("coding-agent", "git", "ghcr.io/corral-dev/coder", when)]
    events.append(_falco("coding-agent", "nmap", "docker.io/kalilinux/kali-rolling",
                         NOW - timedelta(days=2), rule="corral: package tool"))
    with AggregateStore.open(path) as store:
        store.ingest_access(records)
        store.ingest_falco(events, selectors=selectors)
    return path


def control_store(path: Path) -> Path:
    """corral serve's store with one incident whose samples name an image and its tag."""
    from corral.control.store import IncidentStore

    IncidentStore(path).close()
    doc = {"id": "inc-1", "agent": "coder", "pod": "coder-5c6b-fghij",
           "namespace": "ai-workloads", "rule": "corral: package tool", "severity": "high",
           "status": "open", "samples": [{
               "source": "falco", "agent": "coder", "pod": "coder-5c6b-fghij",
               "namespace": "ai-workloads", "rule": "corral: package tool",
               "fields": {"container.image.repository": "ghcr.io/corral-dev/coder",
                          "container.image.tag": "latest", "proc.name": "apt"}}]}
    import sqlite3

    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO incidents VALUES (?,?,?,?,?,?,?)",
                     ("inc-1", "coder", "high", "open", 1.0, 2.0, orjson.dumps(doc)))
    conn.close()
    return path
