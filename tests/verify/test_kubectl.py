"""corral verify --context: the exact kubectl argv, real kubectl output shapes, and the checks'
judgement, replayed through a scripted kubectl (there is no cluster here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from corral.model.load import load_policy
from corral.verify import cluster, results
from corral.verify import kubectl as kc
from corral.verify.cluster import Completed

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parent / "fixtures" / "kubectl"
POLICY = load_policy(ROOT / "examples" / "corral.yaml")


def fixture(name: str) -> str:
    return (FIX / name).read_text()


# -- argv ------------------------------------------------------------------------------------

def test_argv_are_exactly_what_a_user_would_type() -> None:
    k = kc.Kubectl("prod-eu")
    pre = ["kubectl", "--context", "prod-eu", "--request-timeout", "20s"]
    assert k.create() == [*pre, "create", "-f", "-", "-o", "json"]
    assert k.create_dry_run() == [*pre, "create", "--dry-run=server", "-f", "-", "-o", "name"]
    assert k.get_pod("ai", "p") == [*pre, "get", "pod", "p", "-n", "ai", "-o", "json"]
    assert k.logs("ai", "p") == [*pre, "logs", "p", "-n", "ai", "-c", "probe", "--tail=500"]
    assert k.exec("ai", "p", ["id"]) == [*pre, "exec", "p", "-n", "ai", "-c", "probe", "--", "id"]
    assert k.delete_pod("ai", "p") == [*pre, "delete", "pod", "p", "-n", "ai",
                                       "--ignore-not-found=true", "--wait=false",
                                       "--grace-period=0", "--force"]
    assert k.delete_run("ai", "r1") == [*pre, "delete", "pod", "-n", "ai", "-l",
                                        "corral.dev/verify=r1", "--ignore-not-found=true",
                                        "--wait=false"]


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: dead, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: dead, context: {cluster: dead, user: u}}]
users: [{name: u, user: {token: not-a-secret}}]
current-context: dead
"""


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_real_kubectl_accepts_every_argv_and_its_errors_are_recognised(tmp_path: Path) -> None:
    """The real binary parses each argv (no usage error) and fails only on the dead server."""
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(KUBECONFIG)
    env = {**os.environ, "KUBECONFIG": str(cfg)}
    k = kc.Kubectl("dead", request_timeout="3s")
    pod = json.dumps(kc.test_pod(POLICY, POLICY.spec.agents[0], name="x", run_id="r",
                                 image="i", command=["true"]))
    for argv in (k.create(), k.create_dry_run(), k.get_pod("a", "x"), k.logs("a", "x"),
                 k.exec("a", "x", ["true"]), k.delete_pod("a", "x"), k.delete_run("a", "r")):
        done = subprocess.run(argv, input=pod, capture_output=True, text=True, env=env,
                              timeout=30, check=False)
        assert done.returncode != 0
        assert "unknown flag" not in done.stderr and "Usage:" not in done.stderr, argv
        assert kc.cluster_unreachable(done.stderr), (argv, done.stderr)
    missing = subprocess.run(kc.Kubectl("nope").get_pod("a", "x"), capture_output=True,
                             text=True, env=env, timeout=30, check=False)
    assert kc.cluster_unreachable(missing.stderr) == 'context "nope" does not exist'


def test_test_pod_is_restricted_and_carries_the_agent_labels() -> None:
    agent = POLICY.spec.agents[0]
    pod = kc.test_pod(POLICY, agent, name="n", run_id="r", image="i", command=["c"])
    assert pod["metadata"]["namespace"] == POLICY.spec.namespace
    assert pod["metadata"]["labels"] == {**agent.selector, kc.VERIFY_LABEL: "r"}
    sc = pod["spec"]["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["readOnlyRootFilesystem"]
    assert pod["spec"]["automountServiceAccountToken"] is False


# -- parsing real shapes -----------------------------------------------------------------------

def test_parse_pod_states() -> None:
    done = kc.parse_pod(fixture("pod-succeeded.json"))
    assert (done.phase, done.exit_code, done.finished) == ("Succeeded", 0, True)
    stuck = kc.parse_pod(fixture("pod-imagepullbackoff.json"))
    assert stuck.stuck and stuck.waiting_reason == "ImagePullBackOff"
    assert "not found" in (stuck.message or "")
    assert kc.parse_pod(fixture("pod-running.json")).phase == "Running"
    creating = kc.parse_pod(fixture("pod-creating.json"))
    assert not creating.stuck and not creating.finished
    with pytest.raises(kc.ParseError, match="not JSON"):
        kc.parse_pod("error: pods \"x\" not found")


@pytest.mark.parametrize(("name", "kind", "by", "needle"), [
    ("gatekeeper-denied.txt", "webhook", "validation.gatekeeper.sh", "[corral-prod-registries]"),
    ("vap-forbidden.txt", "validating-admission-policy", "corral-prod-images/corral-prod-images",
     "not from an approved registry"),
    ("vap-invalid.txt", "validating-admission-policy", "corral-prod-images/corral-prod-images",
     "failed expression"),
    ("kyverno-denied.txt", "webhook", "validate.kyverno.svc-fail", "validate-registries"),
    ("psa-forbidden.txt", "pod-security", "restricted:latest", "privileged"),
])
def test_parse_refusals(name: str, kind: str, by: str, needle: str) -> None:
    ref = kc.parse_refusal(fixture(name))
    assert ref is not None
    assert (ref.kind, ref.by) == (kind, by)
    assert needle in ref.message and "\n" not in ref.message


def test_other_errors_are_not_refusals() -> None:
    assert kc.parse_refusal(fixture("connection-refused.txt")) is None
    assert kc.cluster_unreachable(fixture("connection-refused.txt")) == \
        "The connection to the server 127.0.0.1:1 was refused"
    assert kc.parse_refusal('Error from server (NotFound): namespaces "x" not found') is None


# -- the checks, through a scripted kubectl ------------------------------------------------------

def probe_lines(*, direct: str = "timeout", allowed: int = 200, denied: int = 403) -> str:
    lines = [
        {"id": "direct", "kind": "direct", "outcome": direct, "error": "timed out"},
        {"id": "gateway-allowed", "kind": "connect", "outcome": "reached" if allowed == 200
         else "refused", "status": allowed, "origin_status": 200},
        {"id": "gateway-denied", "kind": "connect", "outcome": "refused" if denied != 200
         else "reached", "status": denied,
         "reason": "not_in_allowlist" if denied == 403 else None,
         "body": "corral: agent 'research' may not reach corral-verify-denied.example:443"},
    ]
    return "\n".join(json.dumps(x) for x in lines) + "\n"


class ScriptedKubectl:
    """Answers like kubectl would, from fixtures; records every argv."""

    def __init__(self, *, logs: str, image_stderr: str | None, priv_stderr: str | None,
                 get_sequence: Sequence[str] = ("pod-creating.json", "pod-succeeded.json"),
                 unreachable: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.logs, self.image_stderr, self.priv_stderr = logs, image_stderr, priv_stderr
        self.gets = list(get_sequence)
        self.unreachable = unreachable

    def __call__(  # noqa: PLR0911 - one answer per kubectl verb
        self, argv: Sequence[str], *, stdin: str | None, timeout: float
    ) -> Completed:
        argv = list(argv)
        self.calls.append(argv)
        assert argv[:2] == ["kubectl", "--context"] and timeout <= 60
        if self.unreachable and argv[5] != "delete":
            return Completed(1, "", fixture("connection-refused.txt"))
        verb = argv[5]
        if verb == "create" and "--dry-run=server" in argv:
            pod = json.loads(stdin or "{}")
            err = self.priv_stderr if "priv" in pod["metadata"]["name"] else self.image_stderr
            if err:
                return Completed(1, "", err)
            return Completed(0, "pod/x created (server dry run)\n", "")
        if verb == "create":
            return Completed(0, stdin or "", "")
        if verb == "get":
            name = self.gets.pop(0) if len(self.gets) > 1 else self.gets[0]
            return Completed(0, fixture(name), "")
        if verb == "logs":
            return Completed(0, self.logs, "")
        if verb in ("delete", "exec"):
            return Completed(0, "", "")
        raise AssertionError(f"unexpected kubectl call {argv}")


def run(k: ScriptedKubectl, **opts: object) -> list[results.Check]:
    clock = iter(range(0, 100000, 1))
    env = cluster.Env(run=k, sleep=lambda s: None, monotonic=lambda: float(next(clock)))
    return cluster.verify_cluster(POLICY, cluster.Options(context="prod", run_id="5f1c9a2e",
                                                          **opts), env)  # type: ignore[arg-type]


def by_name(checks: list[results.Check]) -> dict[str, results.Check]:
    return {c.name: c for c in checks}


def test_all_controls_in_place() -> None:
    k = ScriptedKubectl(logs=probe_lines(), image_stderr=fixture("vap-forbidden.txt"),
                        priv_stderr=fixture("psa-forbidden.txt"))
    checks = by_name(run(k))
    for name in ("direct-egress-blocked", "gateway-allows", "gateway-denies",
                 "unapproved-image-refused", "privileged-pod-refused"):
        assert checks[name].status == "passed", checks[name]
    assert "corral-prod-images" in checks["unapproved-image-refused"].evidence
    assert checks["privileged-pod-refused"].control == "pod-security"
    assert checks["unexpected-process-detected"].status == "not_available"
    # the probe pod was created with the plan, deleted by name, and the run swept by label
    create = next(c for c in k.calls if c[5] == "create" and "--dry-run=server" not in c)
    assert create[-4:] == ["-f", "-", "-o", "json"]
    assert any(c[5:8] == ["delete", "pod", "corral-verify-net-5f1c9a2e"] for c in k.calls)
    assert k.calls[-1][-4:-2] == ["-l", "corral.dev/verify=5f1c9a2e"]


def test_gateway_url_comes_from_the_rendered_service() -> None:
    plan = cluster.network_plan(POLICY, POLICY.spec.agents[0])
    assert plan["proxy"] == "http://corral-gateway.egress-gateway.svc.cluster.local:8080"
    hosts = [a["host"] for a in plan["attempts"]]
    assert hosts[0] == hosts[1] == "api.openai.com"
    assert hosts[2] == "corral-verify.pastebin.com"  # from the deny list


def test_open_network_and_admitted_image_fail() -> None:
    k = ScriptedKubectl(logs=probe_lines(direct="connected", denied=200), image_stderr=None,
                        priv_stderr=fixture("gatekeeper-denied.txt"))
    checks = by_name(run(k))
    assert checks["direct-egress-blocked"].status == "failed"
    assert checks["gateway-denies"].status == "failed"
    assert checks["unapproved-image-refused"].status == "failed"
    assert "admitted" in checks["unapproved-image-refused"].evidence
    assert not results.all_passed(checks.values())


def test_pod_security_refusing_first_is_not_a_pass_for_the_registry_check() -> None:
    k = ScriptedKubectl(logs=probe_lines(), image_stderr=fixture("psa-forbidden.txt"),
                        priv_stderr=fixture("psa-forbidden.txt"))
    checks = by_name(run(k))
    assert checks["unapproved-image-refused"].status == "error"
    assert checks["privileged-pod-refused"].status == "passed"


def test_unreachable_cluster_is_an_error_and_cleanup_still_runs() -> None:
    k = ScriptedKubectl(logs="", image_stderr=None, priv_stderr=None, unreachable=True)
    checks = run(k)
    assert {c.status for c in checks} <= {"error", "not_available"}
    assert any("was refused" in c.evidence for c in checks)
    assert k.calls[-1][5] == "delete"


def test_stuck_probe_pod_is_reported_and_deleted() -> None:
    k = ScriptedKubectl(logs="", image_stderr=fixture("vap-forbidden.txt"),
                        priv_stderr=fixture("vap-forbidden.txt"),
                        get_sequence=("pod-imagepullbackoff.json",))
    checks = by_name(run(k))
    assert checks["network"].status == "error"
    assert "ImagePullBackOff" in checks["network"].evidence
    assert any(c[5:8] == ["delete", "pod", "corral-verify-net-5f1c9a2e"] for c in k.calls)


def test_runtime_check_waits_for_the_event_at_the_control_plane() -> None:
    seen: list[tuple[str, str, str]] = []

    def find_event(url: str, ns: str, pod: str, since: float,
                   rule: str | None = None) -> str | None:
        seen.append((url, ns, pod))
        return "incident inc-42: falco rule corral research unexpected process" \
            if len(seen) >= 3 else None

    k = ScriptedKubectl(logs=probe_lines(), image_stderr=fixture("vap-forbidden.txt"),
                        priv_stderr=fixture("psa-forbidden.txt"),
                        get_sequence=("pod-creating.json", "pod-succeeded.json",
                                      "pod-running.json"))
    clock = iter(range(100000))
    env = cluster.Env(run=k, sleep=lambda s: None, monotonic=lambda: float(next(clock)),
                      find_event=find_event)
    checks = by_name(cluster.verify_cluster(POLICY, cluster.Options(
        context="prod", run_id="r1", control_url="http://127.0.0.1:9100"), env))
    assert checks["unexpected-process-detected"].status == "passed"
    assert "inc-42" in checks["unexpected-process-detected"].evidence
    exec_call = next(c for c in k.calls if c[5] == "exec")
    assert exec_call[exec_call.index("--") + 1:][:2] == ["python3", "-c"]
    assert seen[0] == ("http://127.0.0.1:9100", "ai-workloads", "corral-verify-proc-r1")


def test_unexpected_process_command_runs_under_its_own_name() -> None:
    """What Falco sees as proc.name is the copied binary's name, even in a shell-less image."""
    argv = kc.unexpected_process_command("corral-drill")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "corral-drill"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_cli_against_an_unreachable_cluster_reports_errors_and_exits_1(tmp_path: Path) -> None:
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(KUBECONFIG)
    done = subprocess.run([sys.executable, "-m", "corral", "verify", "--context", "dead",
                           "-f", str(ROOT / "examples" / "corral.yaml"), "-o", "json",
                           "--timeout", "10"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "KUBECONFIG": str(cfg)}, check=False)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert not report["ok"]
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["network"] == "error"
    assert statuses["unapproved-image-refused"] == "error"
    assert statuses["unexpected-process-detected"] == "not_available"
    assert any("127.0.0.1:1" in c["evidence"] for c in report["checks"])
