"""corral drill --context: the catalogue against a cluster, replayed through a scripted kubectl
that answers with real kubectl output shapes (there is no cluster here)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from corral.model.load import load_policy
from corral.verify import cluster, cluster_drill, drill
from corral.verify.cluster import Completed

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parent / "fixtures" / "kubectl"
POLICY = load_policy(ROOT / "examples" / "corral.yaml")


def fixture(name: str) -> str:
    return (FIX / name).read_text()


def probe_output(plan: dict[str, object], *, open_ids: set[str] = frozenset(),
                 allowed_ids: set[str] = frozenset()) -> str:
    """What the probe prints when the controls work (except for ids named open/allowed)."""
    lines = []
    for a in plan["attempts"]:  # type: ignore[attr-defined]
        i, kind = a["id"], a["kind"]
        if kind == "direct":
            out = {"outcome": "connected" if i in open_ids else "timeout"}
        elif i == "cdn-front-sni-mismatch/baseline" or i in allowed_ids:
            out = {"outcome": "reached", "status": 200, "origin_status": 200}
        elif i == "cdn-front-sni-mismatch/front":
            out = {"outcome": "tunnel_closed", "status": 200, "error": "EOF"}
        else:
            out = {"outcome": "refused", "status": 403, "reason": "not_in_allowlist",
                   "body": "corral: agent 'research' may not reach ..."}
        lines.append(json.dumps({"id": i, "kind": kind, **out}))
    return "\n".join(lines) + "\n"


class Kubectl:
    def __init__(self, *, open_ids: set[str] = frozenset(), admit: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.open_ids, self.admit = open_ids, admit
        self.plan: dict[str, object] | None = None

    def __call__(self, argv: Sequence[str], *, stdin: str | None,
                 timeout: float) -> Completed:
        argv = list(argv)
        self.calls.append(argv)
        verb = argv[5]
        if verb == "create" and "--dry-run=server" in argv:
            return Completed(0, "pod/x created (server dry run)\n", "") if self.admit \
                else Completed(1, "", fixture("vap-forbidden.txt"))
        if verb == "create":
            pod = json.loads(stdin or "{}")
            cmd = pod["spec"]["containers"][0]["command"]
            if "corral.verify.probe" in cmd:
                self.plan = json.loads(cmd[-1])
            return Completed(0, stdin or "", "")
        if verb == "get":  # the probe pod runs to completion, the sleeper pod keeps running
            done = "drill-net" in argv[7]
            return Completed(0, fixture("pod-succeeded.json" if done else "pod-running.json"), "")
        if verb == "logs":
            assert self.plan is not None
            return Completed(0, probe_output(self.plan, open_ids=self.open_ids), "")
        return Completed(0, "", "")


def run(k: Kubectl, control: str | None = None) -> list[drill.Score]:
    clock = iter(range(100000))
    seen: list[str | None] = []

    def find_event(url: str, ns: str, pod: str, since: float,
                   rule: str | None = None) -> str | None:
        seen.append(rule)
        return f"incident inc-1: rules [{rule!r}]"

    env = cluster.Env(run=k, sleep=lambda _s: None, monotonic=lambda: float(next(clock)),
                      find_event=find_event)
    opts = cluster.Options(context="prod", run_id="d1", control_url=control)
    return cluster_drill.drill_cluster(POLICY, opts, env)


def test_every_runnable_technique_is_blocked_or_detected() -> None:
    k = Kubectl()
    scores = {s.technique.id: s for s in run(k, control="http://127.0.0.1:8765")}
    assert set(scores) == set(cluster_drill.NETWORK_JUDGES) | {
        "unapproved-image", "read-sa-token", "run-shell", "package-manager"}
    assert not set(scores) & set(cluster_drill.LOCAL_ONLY)
    bad = {i: s.as_dict() for i, s in scores.items() if not s.ok}
    assert not bad, bad
    assert scores["run-shell"].verdict == "detected"
    assert "corral shell [research]" in scores["run-shell"].results[0].evidence
    assert "corral package manager or compiler [research]" in \
        scores["package-manager"].results[0].evidence
    # the probe plan went to the agent's listener through the rendered Service
    assert k.plan is not None
    assert k.plan["proxy"] == "http://corral-gateway.egress-gateway.svc.cluster.local:8080"
    execs = [c for c in k.calls if c[5] == "exec"]
    assert len(execs) == 2 and all("corral-verify-drill-d1" in c for c in execs)
    assert k.calls[-1][-4:-2] == ["-l", "corral.dev/verify=d1"]


def test_an_open_network_and_an_admitting_cluster_fail_the_drill() -> None:
    k = Kubectl(open_ids={"bypass-proxy/direct", "cloud-metadata/direct"}, admit=True)
    scores = {s.technique.id: s for s in run(k)}
    assert scores["bypass-proxy"].verdict == "missed"
    meta = {r.control: r.result for r in scores["cloud-metadata"].results}
    assert meta == {"network": "missed", "gateway": "blocked"}
    assert scores["unapproved-image"].verdict == "missed"
    assert scores["run-shell"].verdict == "not_available"  # no --control: not a pass
    assert not drill.all_ok(scores.values())
