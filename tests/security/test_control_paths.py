"""Attacker-controlled pod and namespace names never shape a Kubernetes API path.

A forged or hostile Falco alert carries ``k8s.pod.name``; quarantine labels that pod with a PATCH.
Each name below (path traversal, encoded traversal, slashes, a second resource, upper case) is
sent through the whole control plane against a Kubernetes API stand-in over real TLS, and the
stand-in records every path it was asked for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.control.response import api_path
from tests.control.conftest import PlaneFactory, body, falco_event, run
from tests.control.test_response import kube_plane

HOSTILE = [
    "../../../namespaces/egress-gateway/configmaps/corral-gateway-overlay",
    "..%2F..%2F..%2Fnamespaces%2Fegress-gateway%2Fconfigmaps%2Fcorral-gateway-overlay",
    "%2e%2e/%2e%2e/configmaps/x", "..", ".", "research-7d9f/../../configmaps/x",
    "research-7d9f/status", "research-7d9f?dryRun=All", "research-7d9f#x", "Research-7D9F",
    "research-7d9f\r\nX-Injected: 1", "research-7d9f\n", "a" * 254, "-research", "research.",
]
OWN_PODS = "/api/v1/namespaces/ai-workloads/pods"


@pytest.mark.parametrize("pod", HOSTILE)
def test_hostile_pod_names_never_reach_the_api_path(make_plane: PlaneFactory, tmp_path: Path,
                                                     pod: str) -> None:
    async def go() -> None:
        rec, runner, plane = await kube_plane(make_plane, tmp_path)
        plane.ingest_falco(body(falco_event(rule="Read service account token",
                                            priority="Critical", pod=pod)))
        plane.tick()
        for t in list(plane._tasks):
            await t
        paths = [r["path"] for r in rec.requests]
        # the agent (from its pod labels) is still quarantined: its pods by selector, nothing else
        assert paths and all(p.startswith(OWN_PODS) for p in paths), paths
        assert all("configmaps" not in p and ".." not in p and "%2" not in p.lower()
                   for p in paths)
        await plane.aclose()
        await runner.cleanup()
    run(go())


@pytest.mark.parametrize("namespace", ["../egress-gateway", "kube-system/../x", "%2e%2e", "A",
                                       "a" * 64, ""])
def test_api_path_refuses_bad_namespaces(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        api_path(namespace, "pods", "research-a")


@pytest.mark.parametrize("pod", HOSTILE)
def test_api_path_refuses_bad_names(pod: str) -> None:
    with pytest.raises(ValueError, match="name"):
        api_path("ai-workloads", "pods", pod)


def test_api_path_accepts_kubernetes_names() -> None:
    assert api_path("ai-workloads", "pods", "research-7d9f.x-1") == \
        "/api/v1/namespaces/ai-workloads/pods/research-7d9f.x-1"


def test_pods_of_another_namespace_are_not_labelled(make_plane: PlaneFactory,
                                                    tmp_path: Path) -> None:
    async def go() -> None:
        rec, runner, plane = await kube_plane(make_plane, tmp_path)
        assert plane.responder is not None
        results = await plane.responder.quarantine("research", None,
                                                   (("kube-system", "coredns-1"),))
        assert not [r for r in rec.requests if "kube-system" in r["path"]]
        assert any(not r["ok"] and "kube-system" in r["target"] for r in results) or \
            any(a["target"] == "pod/kube-system/coredns-1" and not a["ok"]
                for a in plane.store.actions("research"))
        await plane.aclose()
        await runner.cleanup()
    run(go())
