"""The Gatekeeper library's own test cases (suite.yaml + samples), mapped to corral settings.

``MAPPING`` says, per (suite folder, constraint sample), which corral controls with which
settings are equivalent to the library's constraint parameters, or why none are (``UNCOVERED``).
Used by the corpus agreement test and by docs/admission.md's coverage list.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests import corpora

CORPUS = corpora.GATEKEEPER_LIBRARY

# (suite folder, constraint sample folder) -> (admission section, registries)
MAPPING: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {
    ("general/allowedrepos", "repo-must-be-openpolicyagent"):
        ({"registries": True}, ["openpolicyagent/"]),
    ("general/automount-serviceaccount-token", "automount-serviceaccount-token"):
        ({"automount_token": True}, []),
    ("general/disallowedtags", "container-image-must-not-have-latest-tag"):
        ({"tags": {"disallowed": ["latest"], "exempt_images": [
            "openpolicyagent/opa-exp:latest", "openpolicyagent/opa-exp2:latest"]}}, []),
    ("general/imagedigests", "container-image-must-have-digest"): ({"digest": True}, []),
    ("pod-security-policy/allow-privilege-escalation",
     "psp-allow-privilege-escalation-container"):
        ({"privilege_escalation": {"exempt_images": ["safeimages.com/*"]}}, []),
    ("pod-security-policy/capabilities", "psp-capabilities-baseline"):
        ({"capabilities": {"require_drop_all": False, "allowed": [
            "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
            "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID",
            "SYS_CHROOT"]}}, []),
    ("pod-security-policy/capabilities", "psp-capabilities-restricted"):
        ({"capabilities": {"allowed": ["NET_BIND_SERVICE"], "require_drop_all": True}}, []),
    ("pod-security-policy/host-filesystem", "no-host-paths"): ({"host_path": True}, []),
    ("pod-security-policy/host-namespaces", "psp-host-namespace"):
        ({"host_namespaces": True}, []),
    ("pod-security-policy/host-network-ports", "block_host_network"):
        ({"host_network": True}, []),
    ("pod-security-policy/privileged-containers", "psp-privileged-container"):
        ({"privileged": {"exempt_images": ["safeimages.com/*"]}}, []),
    ("pod-security-policy/read-only-root-filesystem", "full_wildcard"):
        ({"read_only_root_filesystem": {"exempt_images": ["*"]}}, []),
    ("pod-security-policy/read-only-root-filesystem", "psp-readonlyrootfilesystem"):
        ({"read_only_root_filesystem": {"exempt_images": ["specialprogram"]}}, []),
    ("pod-security-policy/read-only-root-filesystem", "wildcard-prefix"):
        ({"read_only_root_filesystem": {"exempt_images": ["safe-images.com/*"]}}, []),
    ("pod-security-policy/seccompv2", "psp-seccomp-restricted"):
        ({"seccomp": {"profiles": ["RuntimeDefault", "Localhost"],
                      "exempt_images": ["nginx-exempt"]}}, []),
    ("pod-security-policy/users", "psp-pods-allowed-user-ranges"):
        ({"run_as_non_root": True}, []),
}

UNCOVERED: dict[tuple[str, str], str] = {
    ("general/allowedreposv2", "repo-must-be-openpolicyagent"):
        "pins exact image:tag entries (ubuntu:20.14); corral approves locations, not tags",
    ("general/containerlimits", "container-must-have-limits"):
        "compares limits to maximums (cpu 200m, memory 1Gi): needs Kubernetes quantity "
        "arithmetic, which the Python CEL engine lacks; corral checks presence only",
    ("general/containerlimits", "container-ignore-cpu-limits"):
        "same: quantity comparison of memory limits",
    ("general/containerrequests", "container-must-have-requests"):
        "resource requests and their maximums are not a corral control",
    ("general/containerresources", "container-must-have-cpu-requests-memory-limits-and-requests"):
        "requires requests; corral's limits control checks limits only",
    ("general/containerresources", "container-must-have-limits-and-requests"):
        "requires requests as well as limits",
    ("general/containerresources", "no-enforcements"):
        "requires nothing; corral's limits control needs at least one resource",
    ("general/disallowedrepos", "repo-must-not-be-k8s-gcr-io"):
        "a registry denylist; corral is an allowlist (approved registries)",
    ("pod-security-policy/host-filesystem", "psp-host-filesystem"):
        "allows read-only hostPath under /foo; corral refuses every hostPath",
    ("pod-security-policy/host-network-ports", "port_range_block_host_network"):
        "host port ranges are not a corral control",
    ("pod-security-policy/host-network-ports", "psp-host-network-ports"):
        "allows hostNetwork and checks host port ranges",
    ("pod-security-policy/seccomp", "psp-seccomp"):
        "legacy seccomp annotations and profile names (runtime/default); corral checks the "
        "seccompProfile field",
    ("pod-security-policy/seccompv2", "psp-seccomp-baseline"):
        "accepts 'not configured'; corral requires a profile",
    ("pod-security-policy/volumes", "psp-volume-types"):
        "volume type allowlist; corral restricts hostPath only",
}


@dataclass(frozen=True)
class Case:
    suite: str
    sample: str
    name: str
    path: Path
    violates: bool

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.sample}/{self.name}"


def _violates(assertions: list[dict[str, Any]]) -> bool:
    def positive(a: dict[str, Any]) -> bool:
        v = a.get("violations")
        return v == "yes" or v is True or (isinstance(v, int) and not isinstance(v, bool) and v > 0)

    overall = [a for a in assertions if "message" not in a]
    return any(positive(a) for a in (overall or assertions))


def cases() -> Iterator[Case]:
    for suite_file in sorted(CORPUS.glob("*/*/suite.yaml")):
        suite = str(suite_file.parent.relative_to(CORPUS))
        for test in yaml.safe_load(suite_file.read_text())["tests"]:
            sample = Path(test["constraint"]).parent.name
            for case in test["cases"]:
                yield Case(suite, sample, case["name"], suite_file.parent / case["object"],
                           _violates(case["assertions"]))
