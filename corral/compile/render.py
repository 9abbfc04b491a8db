"""Every target ``corral render`` writes, in order, and the function that compiles them all. Pure.

A target is ``(folder, compile)``: ``compile(policy) -> Files``. Add a target here and in nothing
else; the writer, the CLI and the schema tests pick it up from this list. Every folder of
Kubernetes manifests also gets a ``kustomization.yaml`` listing them when written
(``with_kustomization``), so ``kubectl apply -k`` applies it; ``falco/`` holds Helm values and a
rules file, not manifests, and gets none.
"""

from __future__ import annotations

from collections.abc import Callable

from corral.compile import (
    admission_cel,
    admission_rego,
    control,
    falco,
    gateway,
    gateway_api,
    kyverno,
    network,
)
from corral.compile.output import Files, Manifest, Text, to_yaml
from corral.model.policy import Policy

Target = tuple[str, Callable[[Policy], Files]]

TARGETS: tuple[Target, ...] = (
    ("network", network.compile_network),
    ("gateway", gateway.compile_gateway),
    ("control", control.compile_control),
    ("falco", falco.compile_falco),
    ("admission-vap", admission_cel.compile_vap),
    ("admission-gatekeeper", admission_rego.compile_gatekeeper),
    ("admission-kyverno", kyverno.compile_kyverno),
    ("gateway-api", gateway_api.compile_gateway_api),
)


def render_all(policy: Policy, only: set[str] | None = None) -> dict[str, Files]:
    """folder -> files, for every target (or those named in ``only``)."""
    return {folder: fn(policy) for folder, fn in TARGETS if only is None or folder in only}


KUSTOMIZATION = "kustomization.yaml"


def with_kustomization(files: Files) -> Files:
    """``files`` plus a kustomization listing them, when they are all Kubernetes manifests."""
    if not all(isinstance(f, Manifest) for f in files.values()):
        return files
    doc = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
           "resources": sorted(files)}
    head = "# written by `corral render`: kubectl apply -k <this folder>\n"
    return {**files, KUSTOMIZATION: Text(head + to_yaml(doc))}
