"""The exact ``kubectl`` invocations ``corral verify --context`` makes, and the parsing of what
kubectl prints. Pure: argv lists and manifests in, typed results out; ``corral.verify.cluster``
runs them.

Why kubectl and not a client library: it is what the user already trusts with their contexts,
credentials and exec plugins, and every step can be replayed by hand from the printed argv.

Shapes parsed here are kubectl's own: ``get pod -o json`` (``status.phase``, container states),
and the admission refusals the API server sends back, which kubectl prints on stderr as
``Error from server (Forbidden): error when creating "STDIN": <message>``, where <message> is one of

- a webhook (Gatekeeper, Kyverno, ...): ``admission webhook "NAME" denied the request: MSG``
- ValidatingAdmissionPolicy: ``pods "x" is forbidden: ValidatingAdmissionPolicy 'P' with binding
  'B' denied request: MSG`` (reason Forbidden), or with the default reason Invalid:
  ``The pods "x" is invalid: : ValidatingAdmissionPolicy 'P' with binding 'B' denied request: MSG``
- Pod Security Admission: ``pods "x" is forbidden: violates PodSecurity "restricted:latest": MSG``
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from corral.model.policy import Agent, Policy

VERIFY_LABEL = "corral.dev/verify"
PROBE_MODULE = "corral.verify.probe"
CONTAINER = "probe"
DEFAULT_REQUEST_TIMEOUT = "20s"


@dataclass(frozen=True, slots=True)
class Kubectl:
    """Builds argv lists for one context. ``binary`` may be a path (or ``oc``)."""

    context: str
    binary: str = "kubectl"
    request_timeout: str = DEFAULT_REQUEST_TIMEOUT

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--context", self.context, "--request-timeout",
                self.request_timeout, *args]

    def create(self) -> list[str]:
        """Create the object(s) given on stdin; prints the created object as JSON."""
        return self.argv("create", "-f", "-", "-o", "json")

    def create_dry_run(self) -> list[str]:
        """Server-side dry run: admission (webhooks with sideEffects None, VAP, PSA) runs, nothing
        is persisted, so there is nothing to clean up."""
        return self.argv("create", "--dry-run=server", "-f", "-", "-o", "name")

    def get_pod(self, namespace: str, name: str) -> list[str]:
        return self.argv("get", "pod", name, "-n", namespace, "-o", "json")

    def logs(self, namespace: str, name: str) -> list[str]:
        return self.argv("logs", name, "-n", namespace, "-c", CONTAINER, "--tail=500")

    def exec(self, namespace: str, name: str, command: list[str]) -> list[str]:
        return self.argv("exec", name, "-n", namespace, "-c", CONTAINER, "--", *command)

    def delete_pod(self, namespace: str, name: str) -> list[str]:
        return self.argv("delete", "pod", name, "-n", namespace, "--ignore-not-found=true",
                         "--wait=false", "--grace-period=0", "--force")

    def delete_run(self, namespace: str, run_id: str) -> list[str]:
        """Everything this run labelled: the safety net after the per-pod deletes."""
        return self.argv("delete", "pod", "-n", namespace, "-l", f"{VERIFY_LABEL}={run_id}",
                         "--ignore-not-found=true", "--wait=false")


# -- manifests -----------------------------------------------------------------------------------

def _restricted_container(image: str, command: list[str]) -> dict[str, Any]:
    """A container Pod Security "restricted" admits, so only corral's controls decide."""
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                      "limits": {"cpu": "200m", "memory": "128Mi"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def test_pod(policy: Policy, agent: Agent, *, name: str, run_id: str, image: str,
             command: list[str], deadline_s: int = 120) -> dict[str, Any]:
    """A short-lived pod carrying ``agent``'s labels, so every corral control treats it as that
    agent: its NetworkPolicy, its gateway port, its Falco rule."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": policy.spec.namespace,
            "labels": {**agent.selector, VERIFY_LABEL: run_id},
            "annotations": {"corral.dev/purpose": "corral verify test pod; safe to delete"},
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline_s,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [_restricted_container(image, command)],
            "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
        },
    }


def probe_command(args: list[str]) -> list[str]:
    return ["python3", "-m", PROBE_MODULE, *args]


def sleeper_command(seconds: int) -> list[str]:
    return ["python3", "-c", f"import time; time.sleep({int(seconds)})"]


def unexpected_process_command(name: str = "corral-drill") -> list[str]:
    """Run a process named ``name`` (Falco's proc.name) in an image that may have no shell:
    copy the Python binary under that name and exec it. Never in any agent's process list."""
    script = ("import os, shutil, sys; p = '/tmp/" + name + "'; shutil.copy(sys.executable, p); "
              "os.chmod(p, 0o755); "
              "os.execv(p, [p, '-c', 'print(open(\"/proc/self/comm\").read().strip())'])")
    return ["python3", "-c", script]


# -- parsing -------------------------------------------------------------------------------------

class ParseError(ValueError):
    """kubectl printed something that is not the expected shape; the message quotes it."""


@dataclass(frozen=True, slots=True)
class PodState:
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    waiting_reason: str | None  # e.g. ErrImagePull, ImagePullBackOff, CreateContainerConfigError
    exit_code: int | None
    message: str | None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def stuck(self) -> bool:
        """A state that will not resolve by waiting (image cannot be pulled, bad config)."""
        return self.waiting_reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                       "CreateContainerConfigError", "CreateContainerError")


def parse_pod(text: str) -> PodState:
    """``kubectl get pod NAME -o json`` -> phase and the first container's state."""
    try:
        pod = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"kubectl get pod: not JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(pod, dict) or pod.get("kind") != "Pod":
        raise ParseError(f"kubectl get pod: expected a Pod object, got {text[:200]!r}")
    status = pod.get("status") or {}
    states = [cs.get("state") or {} for cs in status.get("containerStatuses") or ()]
    state = states[0] if states else {}
    waiting = state.get("waiting") or {}
    term = state.get("terminated") or {}
    return PodState(
        phase=str(status.get("phase", "Unknown")),
        waiting_reason=waiting.get("reason"),
        exit_code=term.get("exitCode"),
        message=waiting.get("message") or term.get("message") or status.get("message"),
    )


RefusalKind = Literal["webhook", "validating-admission-policy", "pod-security"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """An admission refusal: which mechanism, which webhook/policy, and its message."""

    kind: RefusalKind
    by: str  # webhook name, "policy/binding", or the Pod Security level
    message: str
    raw: str

    @property
    def by_corral_control(self) -> bool:
        """Refused by an admission policy (not by Pod Security, which would hide corral's)."""
        return self.kind != "pod-security"


_WEBHOOK = re.compile(r'admission webhook "(?P<by>[^"]+)" denied the request'
                      r'(?::\s*|\s+)(?P<msg>.*)', re.S)
_VAP = re.compile(r"ValidatingAdmissionPolicy '(?P<policy>[^']+)'"
                  r"(?: with binding '(?P<binding>[^']+)')? denied request: (?P<msg>.*)", re.S)
_PSA = re.compile(r'violates PodSecurity "(?P<by>[^"]+)": (?P<msg>.*)', re.S)


def parse_refusal(stderr: str) -> Refusal | None:
    """The admission refusal in kubectl's stderr, or None when it is some other error."""
    text = stderr.strip()
    if m := _VAP.search(text):
        by = m["policy"] + (f"/{m['binding']}" if m["binding"] else "")
        return Refusal("validating-admission-policy", by, _squash(m["msg"]), text)
    if m := _WEBHOOK.search(text):
        return Refusal("webhook", m["by"], _squash(m["msg"]), text)
    if m := _PSA.search(text):
        return Refusal("pod-security", m["by"], _squash(m["msg"]), text)
    return None


def _squash(msg: str) -> str:
    return " ".join(msg.split())


_UNREACHABLE = (
    re.compile(r"The connection to the server (?P<server>\S+) was refused"),
    re.compile(r"Unable to connect to the server: (?P<server>.*)"),
    re.compile(r"failed to download openapi: .*?(?P<server>dial tcp \S+: connect: [^;]+)"),
    re.compile(r'context "(?P<server>[^"]+)" does not exist'),
    re.compile(r"error: (?P<server>.*no configuration has been provided.*)"),
)


def cluster_unreachable(stderr: str) -> str | None:
    """A one-line reason when kubectl could not talk to the cluster at all."""
    for pat in _UNREACHABLE:
        if m := pat.search(stderr):
            return " ".join(m.group(0).split())
    return None


def not_found(stderr: str) -> bool:
    return "(NotFound)" in stderr
