"""Test helper: what a cluster dump of corral's rendered objects looks like after `kubectl apply`.

The API server adds uid, resourceVersion, creationTimestamp, generation, the last-applied
annotation, defaults (Deployment strategy fields, Service clusterIP, Namespace's name label) and
status. The audit's drift check must see through all of that and still catch a real edit.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from corral.model.policy import Policy
from corral.verify.audit import rendered_objects

FIXTURE = Path(__file__).parent / "fixtures" / "cluster-dump.json"


def _uid(text: str) -> str:
    return str(uuid.UUID(hashlib.md5(text.encode()).hexdigest()))


def as_served(obj: dict[str, Any], rv: int) -> dict[str, Any]:
    o = copy.deepcopy(obj)
    m = o["metadata"]
    m.update(creationTimestamp="2026-10-02T09:14:31Z", resourceVersion=str(rv),
             uid=_uid(o["kind"] + m.get("namespace", "") + m["name"]))
    m.setdefault("annotations", {})["kubectl.kubernetes.io/last-applied-configuration"] = \
        json.dumps(obj, separators=(",", ":")) + "\n"
    kind = o["kind"]
    if kind == "Namespace":
        m["labels"]["kubernetes.io/metadata.name"] = m["name"]
        o["spec"], o["status"] = {"finalizers": ["kubernetes"]}, {"phase": "Active"}
    elif kind == "Deployment":
        s = o["spec"]
        m["generation"] = 1
        s.update(progressDeadlineSeconds=600, revisionHistoryLimit=10)
        s["template"]["metadata"]["creationTimestamp"] = None
        ps = s["template"]["spec"]
        ps.update(dnsPolicy="ClusterFirst", restartPolicy="Always",
                  schedulerName="default-scheduler")
        for c in ps["containers"]:
            c.update(terminationMessagePath="/dev/termination-log",
                     terminationMessagePolicy="File")
        o["status"] = {"observedGeneration": 1, "replicas": s["replicas"],
                       "readyReplicas": s["replicas"], "updatedReplicas": s["replicas"]}
    elif kind == "Service":
        ip = o["spec"].get("clusterIP", "10.96.41.7")  # a headless Service keeps "None"
        o["spec"].update(clusterIP=ip, clusterIPs=[ip],
                         internalTrafficPolicy="Cluster", ipFamilies=["IPv4"],
                         ipFamilyPolicy="SingleStack", sessionAffinity="None")
        o["status"] = {"loadBalancer": {}}
    elif kind in ("NetworkPolicy", "PodDisruptionBudget"):
        m["generation"] = 1
    return o


def cluster_dump(policy: Policy) -> dict[str, Any]:
    """The planted fixture plus corral's rendered objects as served, with two planted drifts:
    the quarantine policy deleted, and the research agent's egress port hand-edited."""
    dump = json.loads(FIXTURE.read_text())
    served = []
    for i, loc in enumerate(rendered_objects(policy)):
        o = copy.deepcopy(loc.obj)
        name = o["metadata"]["name"]
        if o["kind"] == "NetworkPolicy" and name == "corral-quarantine":
            continue
        if o["kind"] == "NetworkPolicy" and name == "egress-research":
            o["spec"]["egress"][0]["ports"][0]["port"] = 8443
        served.append(as_served(o, 41000 + 17 * i))
    dump["items"] = served + dump["items"]
    return dump
