"""Benchmark: ``corral check`` vs ``checkov`` (Kubernetes framework) on the same manifests.

Not part of the test suite. Generates N Pod and Deployment manifests (half each, seeded, about
half of them compliant) as multi-document YAML files, then runs, one after the other on the same
core (``taskset -c CPU``):

  corral   python -m corral check -f POLICY -o json DIR      (every admission control on,
                                                             digest pinning included)
  checkov  checkov -d DIR --framework kubernetes --check <the equivalent CKV_K8S checks>
                   -o json --skip-download

checkov runs on chunks of 20 files (2,000 objects) each: in one run over 10,000 objects it grew
to 24 GB and was OOM-killed here. Each command runs under ``ulimit -v`` 8 GB.

Reports objects/s (wall clock of the whole command, start-up included), CPU seconds and peak
RSS of each; corral also on the same objects as ``kubectl get -o json`` List files, and on an
empty folder (its start-up cost). Nothing leaves the machine (``--skip-download``; no network
is needed).

    python bench/check/run.py                 # 10,000 objects, both tools
    python bench/check/run.py --objects 2000 --skip-checkov
    python bench/check/run.py --skip-checkov --pod-security restricted   # + Pod Security checks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "corral.yaml"
NAMESPACE = "ai-workloads"
# checkov's checks that correspond to corral's controls (no checkov check for approved
# registries or for hostPath in general; CKV_K8S_27, the docker socket, is the nearest)
CHECKOV_CHECKS = [
    "CKV_K8S_11", "CKV_K8S_13",              # cpu / memory limits
    "CKV_K8S_14", "CKV_K8S_43",              # tag fixed (not latest/blank), digest
    "CKV_K8S_16", "CKV_K8S_20",              # privileged, allowPrivilegeEscalation
    "CKV_K8S_17", "CKV_K8S_18", "CKV_K8S_19",  # host PID / IPC / network
    "CKV_K8S_22", "CKV_K8S_23",              # read-only root fs, non-root
    "CKV_K8S_25", "CKV_K8S_37",              # added capabilities, capabilities (drop ALL)
    "CKV_K8S_27", "CKV_K8S_31", "CKV_K8S_38",  # docker socket, seccomp, SA token
]


def container(rng: random.Random, name: str) -> dict[str, Any]:
    good = rng.random() < 0.6
    image = rng.choice(["registry.example.com/agents/research", "ghcr.io/corral-dev/tool"])
    pinned = good or rng.random() < 0.5
    image += f"@sha256:{rng.getrandbits(256):064x}" if pinned else ":1.4"
    if not good and rng.random() < 0.3:
        image = rng.choice(["nginx", "python:latest", "registry.example.com.evil.io/x:1"])
    sc: dict[str, Any] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                          "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    if not good:
        for key in rng.sample(list(sc), k=rng.randint(1, 3)):
            del sc[key]
        if rng.random() < 0.2:
            sc["privileged"] = True
    ctr: dict[str, Any] = {"name": name, "image": image, "securityContext": sc,
                           "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                                         "requests": {"cpu": "100m", "memory": "128Mi"}}}
    if not good and rng.random() < 0.3:
        del ctr["resources"]["limits"]
    return ctr


def pod_spec(rng: random.Random) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": rng.random() > 0.8,  # 80% compliant
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container(rng, f"c{i}") for i in range(rng.randint(1, 2))],
    }
    if rng.random() < 0.3:
        spec["initContainers"] = [container(rng, "init")]
    if rng.random() < 0.05:
        spec["hostNetwork"] = True
    if rng.random() < 0.05:
        spec["volumes"] = [{"name": "host", "hostPath": {"path": "/var/run/docker.sock"}}]
    return spec


def manifest(rng: random.Random, i: int) -> dict[str, Any]:
    meta = {"name": f"agent-{i}", "namespace": NAMESPACE, "labels": {"app": "research-agent"}}
    if i % 2 == 0:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec(rng)}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "research-agent"}},
        "template": {"metadata": {"labels": {"app": "research-agent"}}, "spec": pod_spec(rng)}}}


def generate(out: Path, objects: int, files: int, seed: int, as_json: Path | None = None) -> None:
    """Multi-document YAML files; with ``as_json``, the same objects as ``kubectl get -o json``
    List files there too."""
    rng = random.Random(seed)
    out.mkdir(parents=True)
    if as_json:
        as_json.mkdir(parents=True)
    per_file = -(-objects // files)
    for f in range(files):
        docs = [manifest(rng, i) for i in range(f * per_file, min(objects, (f + 1) * per_file))]
        (out / f"m{f:04d}.yaml").write_text(
            "---\n".join(yaml.dump(d, Dumper=yaml.CSafeDumper, sort_keys=False) for d in docs))
        if as_json:
            (as_json / f"m{f:04d}.json").write_text(
                json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))


def write_policy(path: Path, pod_security: str | None = None) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["admission"] = {"controls": {"digest": True}}  # every control on
    if pod_security:  # the Pod Security Standards checks of that level on top
        doc["spec"]["admission"]["pod_security"] = {"level": pod_security}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


MEMORY_CAP_KB = 8 * 1024 * 1024  # checkov took 24 GB (OOM-killed) on 10,000 objects in one run


def run(argv: list[str], stdout: Path, cpu: int) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    capped = ["bash", "-c", f'ulimit -v {MEMORY_CAP_KB}; exec "$@"', "bench"]
    with stdout.open("wb") as out:
        proc = subprocess.run([*capped, "taskset", "-c", str(cpu), *argv], stdout=out,
                              stderr=subprocess.PIPE, check=False, timeout=3600,
                              env=os.environ | {"BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return {"wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "max_rss_mb": after.ru_maxrss / 1024}  # children's peak so far: run corral first


def corral(policy: Path, manifests: Path, work: Path, cpu: int) -> dict[str, Any]:
    out = work / "corral.json"
    stats = run([sys.executable, "-m", "corral", "check", "-f", str(policy), "-o", "json",
                 str(manifests)], out, cpu)
    summary = json.loads(out.read_text())["summary"]
    return stats | {"objects": summary["checked"], "failing_objects": summary["failing"],
                    "violations": summary["violations"]}


def checkov(manifests: Path, work: Path, cpu: int, chunk_files: int) -> dict[str, Any]:
    """checkov over the manifests in folders of ``chunk_files`` files, one run each (memory grows
    faster than linearly with the objects of one run), totals summed."""
    files = sorted(manifests.iterdir())
    total: dict[str, Any] = {"wall_s": 0.0, "cpu_s": 0.0, "max_rss_mb": 0.0, "resources": 0,
                             "failing_objects": 0, "violations": 0, "runs": 0}
    for i in range(0, len(files), chunk_files):
        chunk = work / f"checkov-{i:05d}"
        chunk.mkdir()
        for f in files[i:i + chunk_files]:
            (chunk / f.name).symlink_to(f)
        out = work / "checkov.json"
        stats = run(["checkov", "-d", str(chunk), "--framework", "kubernetes", "--check",
                     ",".join(CHECKOV_CHECKS), "-o", "json", "--skip-download", "--quiet"],
                    out, cpu)
        data = json.loads(out.read_text())
        report = data[0] if isinstance(data, list) else data
        failing = {(r["file_path"], r["resource"]) for r in report["results"]["failed_checks"]}
        total["wall_s"] += stats["wall_s"]
        total["cpu_s"] += stats["cpu_s"]
        total["max_rss_mb"] = max(total["max_rss_mb"], stats["max_rss_mb"])
        total["resources"] += report["summary"]["resource_count"]  # counts templates apart
        total["failing_objects"] += len(failing)
        total["violations"] += report["summary"]["failed"]
        total["runs"] += 1
    return total


def machine() -> dict[str, Any]:
    model = next((ln.split(":", 1)[1].strip() for ln in
                  Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
                 platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cpu", type=int, default=0, help="core both tools are pinned to")
    ap.add_argument("--skip-checkov", action="store_true")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    ap.add_argument("--pod-security", choices=("baseline", "restricted"), default=None,
                    help="also check spec.admission.pod_security at this level")
    ap.add_argument("--checkov-chunk", type=int, default=20, metavar="FILES",
                    help="files per checkov run (default 20, i.e. 2,000 objects)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-bench-check-") as tmp:
        work = Path(tmp)
        policy, manifests, lists = work / "corral.yaml", work / "manifests", work / "lists"
        write_policy(policy, args.pod_security)
        generate(manifests, args.objects, args.files, args.seed, lists)
        (work / "empty").mkdir()
        results: dict[str, Any] = {"machine": machine(), "objects": args.objects,
                                   "pod_security": args.pod_security,
                                   "corral_startup": corral(policy, work / "empty", work,
                                                            args.cpu),
                                   "corral": corral(policy, manifests, work, args.cpu),
                                   "corral_json": corral(policy, lists, work, args.cpu)}
        if not args.skip_checkov:
            results["checkov"] = checkov(manifests, work, args.cpu, args.checkov_chunk)
            results["checkov"]["objects"] = args.objects
    for tool in ("corral_startup", "corral", "corral_json", "checkov"):
        if tool in results:
            r = results[tool]
            r["objects_per_s"] = round(r["objects"] / r["wall_s"], 1)
            r["objects_per_cpu_s"] = round(r["objects"] / max(r["cpu_s"], 1e-9), 1)
            print(f"{tool:14} {r['objects']:6} objects  {r['wall_s']:7.2f} s wall  "
                  f"{r['cpu_s']:7.2f} s cpu  {r['objects_per_s']:8.1f} objects/s  "
                  f"peak RSS {r['max_rss_mb']:.0f} MB  failing {r['failing_objects']}")
    if "checkov" in results:
        ratio = results["corral"]["objects_per_s"] / results["checkov"]["objects_per_s"]
        cpu_ratio = results["checkov"]["cpu_s"] / results["corral"]["cpu_s"]
        results["speedup"] = round(ratio, 1)
        results["speedup_cpu"] = round(cpu_ratio, 1)
        print(f"corral/checkov throughput (YAML, wall): {ratio:.1f}x; CPU: {cpu_ratio:.1f}x")
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
