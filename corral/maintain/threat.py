"""The threat model document: ``THREAT_MODEL.md`` generated from the policy, the last drill and
what changed since the previous threat model. Pure: text in, Markdown out.

Sits under ``corral threats``. Sections: the trust boundaries corral draws; each agent as an
asset with its reach (destinations, the exfiltration channels its allow entries open, quotas,
processes, exemptions, Falco exceptions); the drill catalogue's techniques mapped to the controls
that block or detect them, with the last drill's outcome; the gaps corral knows it does not
cover, general and policy-specific; and the new capabilities since the previous policy (new
agents, destinations, widened rules) and the drill outcomes that changed. Meant to be reviewed
by people and committed next to the policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral.model.channels import channels_opened_by
from corral.model.domains import DomainPattern
from corral.model.policy import Agent, Policy
from corral.model.quantity import format_bytes
from corral.verify.catalogue import TECHNIQUES, Technique

Drill = Mapping[str, Any]  # corral drill -o json

GAPS: tuple[tuple[str, str], ...] = (
    ("DNS exfiltration through the cluster resolver",
     "agents may query cluster DNS (the default-deny policy must allow it), and the resolver "
     "forwards any name upstream: data encoded in query names leaves without passing the "
     "gateway. corral does not inspect DNS queries; use a resolver policy (CoreDNS firewall, "
     "Cilium DNS-aware policy with `network.cilium`) or log queries"),
    ("Exfiltration through allowed destinations",
     "anything an agent may reach can receive data (an API that stores text, a repository it "
     "may push to). The byte quota and the review's volume anomalies bound and reveal it; they "
     "do not prevent it"),
    ("Content inside TLS",
     "the gateway decides on names, addresses and SNI, not on what is sent inside a tunnel"),
    ("Compromise of the gateway, the control plane or the node",
     "the gateway and control plane are trusted; a node or kernel compromise escapes every "
     "layer here"),
    ("Events Falco does not see",
     "Falco sees system calls of the agents' containers; a technique that needs none of the "
     "watched calls (e.g. misuse of an allowed API) raises no runtime alert"),
)


@dataclass(frozen=True, slots=True)
class Inputs:
    policy: Policy
    policy_path: str
    policy_version: str
    drill: Drill | None = None
    previous: Policy | None = None
    previous_drill: Drill | None = None
    generated: str = ""  # date text; empty: left out (byte-identical output)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def _list(items: Iterable[object]) -> str:
    values = [f"`{i}`" for i in items]
    return ", ".join(values) if values else "none"


def _exemptions(policy: Policy) -> list[tuple[str, str]]:
    controls = policy.spec.admission.controls
    return [(name, pattern) for name in type(controls).model_fields
            for pattern in getattr(getattr(controls, name), "exempt_images", ())]


def _channels(agent: Agent) -> list[str]:
    return sorted({f"{c.domain} ({c.category})" for p in agent.egress.allow
                   for c in channels_opened_by(p)})


def _asset(policy: Policy, agent: Agent, port: int) -> list[str]:
    e = agent.egress
    rate = f"{e.rate.requests_per_minute}/min" if e.rate else "unlimited"
    quota = f"{format_bytes(e.quota.bytes_out_per_hour)}/h" if e.quota else "unlimited"
    exceptions = [x.name for x in policy.spec.runtime.exceptions
                  if not x.agents or agent.name in x.agents]
    rows = [
        ("pods", ", ".join(f"{k}={v}" for k, v in agent.selector.items())
         + f" in namespace `{policy.spec.namespace}`"),
        ("egress mode", e.mode + (" (nothing is refused: allowlist logged only)"
                                  if e.mode == "learn" else "")),
        ("gateway listener", f"port {port} (its identity)"),
        ("may reach", _list(e.allow)),
        ("private ranges", _list(e.allow_cidrs)),
        ("denied", _list(e.deny)),
        ("exfiltration channels opened", ", ".join(_channels(agent)) or "none known"),
        ("rate / upload quota / tunnels", f"{rate} / {quota} / {e.max_tunnels}"),
        ("SNI check", "on" if e.sni_check else "OFF"),
        ("processes", _list(agent.processes) if agent.processes else "any (no allowlist)"),
        ("Falco exceptions", _list(exceptions)),
        ("admission exemptions (whole namespace)",
         ", ".join(f"`{img}` from {ctl}" for ctl, img in _exemptions(policy)) or "none"),
        ("accepts traffic", "yes (Gateway API route)" if agent.ingress else "no"),
    ]
    return [f"### {agent.name}", "", *_table(("", ""), rows)]


def _outcomes(drill: Drill | None) -> dict[str, Mapping[str, Any]]:
    if not drill:
        return {}
    return {str(t.get("id")): t for t in drill.get("techniques") or ()
            if isinstance(t, Mapping)}


def _controls_text(t: Technique, outcome: Mapping[str, Any] | None) -> str:
    if outcome is None:
        return ", ".join(t.controls)
    results = {str(c.get("control")): str(c.get("result"))
               for c in outcome.get("controls") or () if isinstance(c, Mapping)}
    return ", ".join(f"{c}: {results.get(c, 'not run')}" for c in t.controls)


def _technique_rows(drill: Drill | None) -> list[tuple[object, ...]]:
    found = _outcomes(drill)
    rows: list[tuple[object, ...]] = []
    for t in TECHNIQUES:
        o = found.get(t.id)
        last = "not drilled" if o is None else (
            f"{o.get('verdict')} ({'ok' if o.get('ok') else 'NOT OK'})")
        rows.append((t.title, t.attack, t.why, t.expect, _controls_text(t, o), last))
    return rows


def policy_gaps(policy: Policy) -> list[str]:
    """Gaps this policy leaves open, on top of the general ones."""
    out = []
    for a in policy.spec.agents:
        if a.egress.mode == "learn":
            out.append(f"agent `{a.name}` is in learn mode: the gateway refuses nothing it asks")
        if a.egress.quota is None:
            out.append(f"agent `{a.name}` has no upload quota: slow exfiltration is unbounded")
        if not a.egress.sni_check:
            out.append(f"agent `{a.name}` has the SNI check off: domain fronting is not caught")
        if not a.processes:
            out.append(f"agent `{a.name}` lists no processes: no unexpected-process alerts")
        out += [f"agent `{a.name}` may reach {c}" for c in _channels(a)]
    rt = policy.spec.runtime
    if not rt.enabled:
        out.append("Falco rules are off (`spec.runtime.enabled: false`): nothing is detected")
    out += [f"Falco rule kind `{k}` is disabled for every agent" for k in rt.disable]
    if not policy.spec.admission.engines:
        out.append("no admission engine is rendered: images and pod settings are not checked")
    out += [f"admission control `{n}` is off" for n, c in
            ((n, getattr(policy.spec.admission.controls, n))
             for n in type(policy.spec.admission.controls).model_fields)
            if not c.enabled and n != "digest"]
    out += [f"images matching `{p}` are exempt from `{n}`" for n, p in _exemptions(policy)]
    if not policy.spec.network.cilium:
        out.append("no FQDN policy at the network layer (`network.cilium: false`): the "
                   "gateway alone decides names")
    return out


def _patterns_cover(old: Iterable[DomainPattern], new: DomainPattern) -> bool:
    """Some old entry already allowed everything ``new`` allows."""
    return any(p.port == new.port and (str(p) == str(new) or (
        p.wildcard and new.name.endswith("." + p.name))) for p in old)


def capability_changes(old: Policy, new: Policy) -> list[str]:
    """What an agent may do now that it could not under ``old`` (and what was taken away)."""
    before = {a.name: a for a in old.spec.agents}
    out = []
    for a in new.spec.agents:
        was = before.get(a.name)
        if was is None:
            out.append(f"new agent `{a.name}`: may reach {_list(a.egress.allow)}")
            continue
        out += _agent_changes(was, a)
    out += [f"agent `{n}` removed" for n in before if n not in {a.name for a in new.spec.agents}]
    added = [str(r) for r in new.spec.registries if r not in old.spec.registries]
    out += [f"registry `{r}` approved" for r in added]
    old_ex = set(_exemptions(old))
    out += [f"new admission exemption `{p}` from `{n}`" for n, p in _exemptions(new)
            if (n, p) not in old_ex]
    old_exc = {x.name for x in old.spec.runtime.exceptions}
    out += [f"new Falco exception `{x.name}` ({x.rule})" for x in new.spec.runtime.exceptions
            if x.name not in old_exc]
    return out


def _agent_changes(was: Agent, a: Agent) -> list[str]:
    out = []
    for p in a.egress.allow:
        if not _patterns_cover(was.egress.allow, p):
            kind = "widened to" if p.wildcard and any(
                q.name.endswith("." + p.name) or q.name == p.name for q in was.egress.allow) \
                else "new destination"
            out.append(f"agent `{a.name}`: {kind} `{p}`")
    out += [f"agent `{a.name}`: new private range `{c}`" for c in a.egress.allow_cidrs
            if c not in was.egress.allow_cidrs]
    out += [f"agent `{a.name}`: new process `{p}`" for p in a.processes
            if was.processes and p not in was.processes]
    if was.egress.mode == "enforce" and a.egress.mode == "learn":
        out.append(f"agent `{a.name}`: back to learn mode (nothing refused)")
    if was.egress.mode == "learn" and a.egress.mode == "enforce":
        out.append(f"agent `{a.name}`: now enforcing (narrower)")
    if was.egress.quota and (a.egress.quota is None or a.egress.quota.bytes_out_per_hour
                             > was.egress.quota.bytes_out_per_hour):
        out.append(f"agent `{a.name}`: upload quota raised or removed")
    out += [f"agent `{a.name}`: no longer reaches `{p}`" for p in was.egress.allow
            if not _patterns_cover(a.egress.allow, p)]
    return out


def drill_changes(old: Drill | None, new: Drill | None) -> list[str]:
    before, after = _outcomes(old), _outcomes(new)
    out = []
    for t in TECHNIQUES:
        a, b = before.get(t.id), after.get(t.id)
        if a is None or b is None or a.get("verdict") == b.get("verdict"):
            continue
        out.append(f"`{t.id}`: {a.get('verdict')} -> {b.get('verdict')}"
                   + ("" if b.get("ok") else " (NOT OK)"))
    return out


def _header(i: Inputs) -> list[str]:
    p = i.policy
    drill = i.drill
    when = f" on {i.generated}" if i.generated else ""
    lines = [f"# Threat model: policy `{p.metadata.name}`", "",
             f"Generated by `corral threats` from `{i.policy_path}` (policy version "
             f"`{i.policy_version}`){when}. Review it, edit the prose if you like, and commit "
             "it next to the policy; regenerate each quarter.", ""]
    if drill is not None:
        state = "every technique as expected" if drill.get("ok") else "some techniques NOT OK"
        lines += [f"Last drill: target `{drill.get('target', '?')}`, {state}.", ""]
    else:
        lines += ["No drill results were given (`corral drill ... -o json`): outcomes are "
                  "left open.", ""]
    return lines


def _boundaries(p: Policy) -> list[str]:
    return ["## Trust boundaries", "",
            f"- Agents run in namespace `{p.spec.namespace}` under default-deny "
            "NetworkPolicies: their pods reach only cluster DNS and their own listener of the "
            f"egress gateway (namespace `{p.spec.gateway.namespace}`).",
            "- The gateway is trusted: it decides every request by the agent's allowlist, "
            "refuses private and metadata addresses (SSRF guard) and logs one line per request.",
            "- Admission (" + (", ".join(p.spec.admission.engines) or "none") + ") refuses "
            "unapproved images and unsafe pod settings in the agents' namespace.",
            "- Falco watches the agents' containers; the control plane (`corral serve`) turns "
            "alerts and gateway refusals into incidents and may quarantine the agent.",
            "- Agents are not trusted: they run code they generated and decide at run time "
            "what to call.", ""]


def render(i: Inputs) -> str:
    """The whole document."""
    p = i.policy
    ports = p.spec.listener_ports()
    lines = _header(i) + _boundaries(p) + ["## Assets: the agents and their reach", ""]
    for a in p.spec.agents:
        lines += _asset(p, a, ports[a.name])
    lines += ["## Techniques and the controls that answer them", "",
              "From the drill catalogue (`corral drill`); *block* means a control must refuse "
              "it, *detect* that it must at least be seen.", ""]
    lines += _table(("technique", "ATT&CK", "what the attacker gains", "expect",
                     "controls (last drill)", "last drill"), _technique_rows(i.drill))
    lines += ["## Known gaps", "", "What corral does not cover:", ""]
    lines += [f"- **{title}**: {why}." for title, why in GAPS]
    specific = policy_gaps(p)
    lines += ["", "What this policy leaves open:", ""]
    lines += [f"- {g}" for g in specific] or ["- nothing beyond the above"]
    lines += ["", "## Changes since the previous threat model", ""]
    if i.previous is None:
        lines += ["No previous policy was given (`--previous`): first threat model.", ""]
    else:
        changes = capability_changes(i.previous, p)
        lines += [f"- {c}" for c in changes] or ["- no new capabilities"]
        lines.append("")
    drills = drill_changes(i.previous_drill, i.drill)
    if drills:
        lines += ["Drill outcomes that changed:", "", *[f"- {d}" for d in drills], ""]
    return "\n".join(lines).rstrip("\n") + "\n"
