"""The in-cluster scanner: a monthly CronJob that runs Trivy or Grype over the image inventory
and leaves one JSON report per image where ``corral vulns`` reads them. Pure.

Objects (in the control plane's namespace, ``corral-system`` unless the policy's control URL
names another): a ConfigMap with the images (one per line), a PersistentVolumeClaim the reports
go to (``/reports/<YYYY-MM>/<image>.<scanner>.json``: this month's folder next to last month's,
which is what ``corral vulns DIR --previous DIR`` compares), a ServiceAccount without a token,
and the CronJob, restricted Pod Security (non-root, read-only root, no capabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from corral.compile import k8s
from corral.compile.control import location
from corral.compile.output import Files, manifest
from corral.model.policy import Policy

Scanner = Literal["trivy", "grype"]
NAME = "corral-scanner"
DEFAULT_IMAGES: dict[Scanner, str] = {"trivy": "docker.io/aquasec/trivy:0.58.1",
                                      "grype": "docker.io/anchore/grype:v0.86.1"}
_COMMANDS: dict[Scanner, str] = {
    "trivy": 'trivy image --quiet --cache-dir /cache --format json --output "$file" "$img"',
    "grype": 'grype "$img" --quiet --output json --file "$file"',
}
_SCRIPT = """set -u
out=/reports/$(date -u +%Y-%m)
mkdir -p "$out"
failed=0
while IFS= read -r img; do
  [ -n "$img" ] || continue
  file="$out/$(printf '%s' "$img" | tr -c 'A-Za-z0-9._-' '_').{scanner}.json"
  {command} || { echo "scan failed: $img" >&2; failed=1; }
done < /config/images.txt
exit $failed
"""


@dataclass(frozen=True, slots=True)
class ScannerSettings:
    scanner: Scanner = "trivy"
    image: str | None = None  # default: DEFAULT_IMAGES[scanner]
    schedule: str = "0 3 1 * *"  # 03:00 UTC on the first of the month
    storage: str = "2Gi"


def namespace(policy: Policy) -> str:
    loc = location(policy)
    return loc[1] if loc else "corral-system"


def _container(s: ScannerSettings) -> dict[str, Any]:
    script = _SCRIPT.replace("{scanner}", s.scanner).replace("{command}", _COMMANDS[s.scanner])
    return {
        "name": "scan", "image": s.image or DEFAULT_IMAGES[s.scanner],
        "command": ["/bin/sh", "-c", script],
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "TRIVY_CACHE_DIR", "value": "/cache"},
                {"name": "GRYPE_DB_CACHE_DIR", "value": "/cache/grype"}],
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                      "limits": {"cpu": "1", "memory": "2Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": True},
                         {"name": "reports", "mountPath": "/reports"},
                         {"name": "cache", "mountPath": "/cache"},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }


def _cronjob(policy: Policy, ns: str, s: ScannerSettings) -> dict[str, Any]:
    pod = {"metadata": {"labels": {"app.kubernetes.io/name": NAME}}, "spec": {
        "serviceAccountName": NAME, "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                            "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(s)],
        "volumes": [{"name": "config", "configMap": {"name": f"{NAME}-images"}},
                    {"name": "reports", "persistentVolumeClaim": {"claimName": f"{NAME}-reports"}},
                    {"name": "cache", "emptyDir": {"sizeLimit": "4Gi"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]}}
    return k8s.obj("batch/v1", "CronJob", k8s.meta(NAME, ns, policy=policy.metadata.name), spec={
        "schedule": s.schedule, "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": {"backoffLimit": 1, "activeDeadlineSeconds": 6 * 3600,
                                 "template": pod}}})


def render_scanner(policy: Policy, images: Sequence[str], settings: ScannerSettings) -> Files:
    """The scanner's objects for ``images`` (normalised references, one per line)."""
    ns, name = namespace(policy), policy.metadata.name
    return {
        "10-serviceaccount.yaml": manifest(k8s.obj(
            "v1", "ServiceAccount", k8s.meta(NAME, ns, policy=name),
            automountServiceAccountToken=False)),
        "20-images.yaml": manifest(k8s.obj(
            "v1", "ConfigMap", k8s.meta(f"{NAME}-images", ns, policy=name),
            data={"images.txt": "".join(f"{i}\n" for i in sorted(set(images)))})),
        "30-reports-pvc.yaml": manifest(k8s.obj(
            "v1", "PersistentVolumeClaim", k8s.meta(f"{NAME}-reports", ns, policy=name),
            spec={"accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": settings.storage}}})),
        "40-cronjob.yaml": manifest(_cronjob(policy, ns, settings)),
    }
