"""Build the weekly review (``report.Report``) from the aggregate store and the policy.

Sits between ``corral.store.queries`` (indexed reads) and the report's consumers. Each section is
one small function over the store connection, the policy and ``ReviewOptions``; the current
policy's verdict on each destination comes from the real decision function (``corral.decide``).
"""

from __future__ import annotations

import ipaddress
import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from corral.decide.egress import AgentRules, EgressRequest, decide
from corral.learn import falco_tuning
from corral.learn.report import (
    AgentActivity,
    Anomaly,
    Charts,
    DeniedDestination,
    NewDestination,
    Readiness,
    Report,
    ReviewOptions,
    UnusedEntry,
    Verdict,
)
from corral.learn.risk import Flag, flags_for, registrable
from corral.model.domains import (
    is_address_entry,
    parse_address_pattern,
    parse_ip_literal,
    parse_pattern,
)
from corral.model.policy import Agent, Policy
from corral.store import queries
from corral.store.access import day_iso, day_number

MAD_SCALE = 1.4826  # MAD -> standard deviation for normal data


def build_report(conn: sqlite3.Connection, policy: Policy, opts: ReviewOptions,
                 policy_name: str = "corral.yaml") -> Report:
    """Every section of the review, for the window ``opts.since`` .. ``opts.now``."""
    since_day = day_number(opts.since.astimezone(UTC).date().isoformat())
    rules = {a.name: AgentRules.from_agent(a) for a in policy.spec.agents}
    known_tlds = frozenset(t for t, first in queries.tld_first_seen(conn).items()
                           if first < opts.since_text)
    new = new_destinations(conn, opts, since_day, rules, known_tlds)
    denials = queries.denied_in_window(conn, since_day)
    new_keys = {(d.agent, d.host, d.port) for d in new} | {
        (d.agent, h, d.port) for d in new for h in d.hosts}
    return Report(
        generated=opts.now.astimezone(UTC).isoformat(timespec="seconds"),
        since=opts.since.astimezone(UTC).isoformat(timespec="seconds"),
        policy=policy_name,
        new_destinations=tuple(new),
        denied=tuple(denied(denials, rules, known_tlds, new_keys)),
        activity=tuple(activity(conn, since_day, policy, denials, opts.group_min)),
        unused=tuple(unused_entries(conn, policy, opts)),
        anomalies=tuple(anomalies(conn, opts, since_day)),
        falco=tuple(falco_tuning.noisy_rules(conn, opts, since_day)),
        readiness=tuple(readiness(conn, policy, opts, since_day)),
        charts=charts(conn, opts),
    )


def verdict(rules: AgentRules | None, host: str, port: int) -> Verdict:
    """What the current policy decides for ``host:port`` (unknown agent: deny, no profile)."""
    if rules is None:
        return Verdict("deny", "no agent profile in the policy", None)
    d = decide(rules, EgressRequest("http" if port == 80 else "connect", host, port))
    return Verdict(d.outcome, d.reason, d.rule)


def new_destinations(conn: sqlite3.Connection, opts: ReviewOptions, since_day: int,
                     rules: dict[str, AgentRules],
                     known_tlds: frozenset[str]) -> list[NewDestination]:
    rows = queries.new_destinations(conn, opts.since_text)
    pods = queries.pods_since(conn, ((r.agent, r.host, r.port) for r in rows), since_day)
    found = [
        NewDestination(
            r.agent, r.host, r.port, r.first_seen, r.last_seen, r.requests, r.bytes_up,
            r.bytes_down, pods.get((r.agent, r.host, r.port), 0), r.n_allow, r.n_deny,
            r.n_would_deny, tuple(flags_for(r.host, known_tlds)),
            verdict(rules.get(r.agent), r.host, r.port))
        for r in rows
    ]
    return [replace(d, pods=queries.distinct_pods(conn, d.agent, d.hosts, d.port, since_day))
            if d.hosts else d for d in group_by_domain(found, opts.group_min)]


def group_by_domain(found: list[NewDestination], group_min: int) -> list[NewDestination]:
    """Many new hosts of one agent under one domain (typical of subdomain exfiltration) -> one
    ``*.<domain>`` row, so a flood of generated names does not bury everything else. Groups form
    at ``group_min`` hosts when one looks encoded, else at four times that."""
    groups: dict[tuple[str, str, int], list[NewDestination]] = defaultdict(list)
    for d in found:
        groups[(d.agent, registrable(d.host), d.port)].append(d)
    out: list[NewDestination] = []
    for (agent, domain, port), members in groups.items():
        encoded = any(f.kind == "encoded" for m in members for f in m.flags)
        big = len(members) >= group_min and (encoded or len(members) >= 4 * group_min)
        if not big or domain in {m.host for m in members}:
            out.extend(members)
            continue
        out.append(_merge_group(agent, domain, port, members))
    return sorted(out, key=lambda d: (d.agent, not d.risky, -d.bytes_up, d.host))


def _merge_group(agent: str, domain: str, port: int,
                 members: list[NewDestination]) -> NewDestination:
    flags: dict[str, Flag] = {}
    for m in members:
        for f in m.flags:
            flags.setdefault(f.kind, f)
    return NewDestination(
        agent, f"*.{domain}", port, min(m.first_seen for m in members),
        max(m.last_seen for m in members), sum(m.requests for m in members),
        sum(m.bytes_up for m in members), sum(m.bytes_down for m in members),
        max(m.pods for m in members), sum(m.allowed for m in members),
        sum(m.denied for m in members), sum(m.would_deny for m in members),
        tuple(flags.values()), members[0].verdict, tuple(sorted(m.host for m in members)))


def denied(denials: list[queries.DestRow], rules: dict[str, AgentRules],
           known_tlds: frozenset[str],
           new_keys: set[tuple[str, str, int]]) -> Iterable[DeniedDestination]:
    for r in denials:
        yield DeniedDestination(
            r.agent, r.host, r.port, r.n_deny, r.n_would_deny, r.last_seen,
            (r.agent, r.host, r.port) in new_keys, tuple(flags_for(r.host, known_tlds)),
            verdict(rules.get(r.agent), r.host, r.port))


def _modes(policy: Policy) -> dict[str, str]:
    return {a.name: a.egress.mode for a in policy.spec.agents}


def activity(conn: sqlite3.Connection, since_day: int, policy: Policy,
             denials: list[queries.DestRow], group_min: int) -> list[AgentActivity]:
    modes = _modes(policy)
    by_domain: dict[tuple[str, str, int], list[tuple[str, int]]] = defaultdict(list)
    for r in denials:
        by_domain[(r.agent, registrable(r.host), r.port)].append(
            (r.host, r.n_deny + r.n_would_deny))
    top: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for (agent, domain, port), hosts in by_domain.items():
        if len(hosts) >= group_min and domain not in {h for h, _ in hosts}:
            top[agent].append((f"*.{domain}:{port} ({len(hosts)} hosts)",
                               sum(n for _, n in hosts)))
        else:
            top[agent].extend((f"{h}:{port}", n) for h, n in hosts)
    out = []
    for agent, (req, up, down, _allow, deny, would) in sorted(
            queries.agent_window(conn, since_day).items()):
        worst = tuple(sorted(top[agent], key=lambda x: (-x[1], x[0]))[:5])
        out.append(AgentActivity(agent, modes.get(agent, "unknown"), req, up, down, deny, would,
                                 worst))
    return out


def _entries(agent: Agent) -> list[tuple[str, str]]:
    e = agent.egress
    return ([("allow", str(p)) for p in e.allow]
            + [("resolve_into", str(c)) for c in e.resolve_into]
            + [("allow_cidrs", str(c)) for c in e.allow_cidrs])


def unused_entries(conn: sqlite3.Connection, policy: Policy,
                   opts: ReviewOptions) -> list[UnusedEntry]:
    """Allow entries of agents observed at least ``unused_days`` that no request (allowed, or
    denied in spite of them) has matched since: least privilege says drop them."""
    cutoff = opts.now - timedelta(days=opts.unused_days)
    cutoff_text = cutoff.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    cutoff_day = day_number(cutoff.astimezone(UTC).date().isoformat())
    first_day = queries.agent_first_day(conn)
    used = queries.rule_last_allowed(conn)
    out = []
    for agent in policy.spec.agents:
        if first_day.get(agent.name, cutoff_day + 1) > cutoff_day:
            continue  # not observed long enough to call anything unused
        for fld, entry in _entries(agent):
            last = used.get((agent.name, entry))
            if last is not None and last >= cutoff_text:
                continue
            seen = _last_matched(conn, agent.name, fld, entry)
            if seen is None or seen < cutoff_text:
                out.append(UnusedEntry(agent.name, entry, fld, max(last or "", seen or "")
                                       or None))
    return out


def _last_matched(conn: sqlite3.Connection, agent: str, fld: str, entry: str) -> str | None:
    """When a request of the agent last matched the entry (any decision)."""
    if fld in ("allow_cidrs", "resolve_into") or is_address_entry(entry):
        addr = parse_address_pattern(entry) if fld == "allow" else None
        net = addr.net if addr is not None else ipaddress.ip_network(entry)
        hits = [last for host, port, last in queries.address_destinations(conn, agent)
                if (ip := parse_ip_literal(host)) is not None and ip.version == net.version
                and ip in net and (addr is None or port == addr.port)]
        return max(hits, default=None)
    p = parse_pattern(entry)
    ports = (p.port,) if p.port is not None else (443, 80)
    return queries.name_last_seen(conn, agent, p.name, p.wildcard, ports)


def _baseline(values: list[int]) -> tuple[float, float]:
    median = statistics.median(values)
    return median, statistics.median(abs(v - median) for v in values)


def anomalies(conn: sqlite3.Connection, opts: ReviewOptions, since_day: int) -> list[Anomaly]:
    """Daily bytes out to a destination far above the agent's own baseline (median/MAD of the
    active days before the window); only days above ``anomaly_min_bytes`` are candidates."""
    today = day_number(opts.now.astimezone(UTC).date().isoformat())
    peak: dict[tuple[str, str, int], tuple[int, int]] = {}
    for agent, host, port, day, up in queries.heavy_days(conn, since_day, today,
                                                         opts.anomaly_min_bytes):
        key = (agent, host, port)
        if key not in peak or up > peak[key][1]:
            peak[key] = (day, up)
    baselines = queries.daily_bytes_up(conn, peak, since_day - opts.baseline_days, since_day)
    out = []
    for key, (day, up) in sorted(peak.items()):
        days = baselines.get(key, [])
        if len(days) < opts.min_baseline_days:
            continue  # new or rare destination: the new-destinations section covers it
        median, mad = _baseline(days)
        threshold = max(opts.anomaly_factor * median, median + opts.anomaly_mads * MAD_SCALE * mad)
        if up > threshold:
            out.append(Anomaly(*key, day_iso(day), up, median, mad, len(days)))
    return sorted(out, key=lambda a: -a.ratio)


def readiness(conn: sqlite3.Connection, policy: Policy, opts: ReviewOptions,
              since_day: int) -> list[Readiness]:
    """Learn-mode agents with no new destination for ``stable_days``: ready to enforce."""
    learners = [a.name for a in policy.spec.agents if a.egress.mode == "learn"]
    last_new = queries.last_new_destination(conn, learners)
    first_day = queries.agent_first_day(conn)
    window = queries.agent_window(conn, since_day)
    today = day_number(opts.now.astimezone(UTC).date().isoformat())
    out = []
    for name in learners:
        observed = today - first_day[name] if name in first_day else 0
        last = last_new.get(name)
        quiet = (opts.now - _parse(last)).days if last else 0
        would = window.get(name, (0, 0, 0, 0, 0, 0))[5]
        if name not in first_day:
            ready, why = False, "no traffic recorded yet"
        elif observed < opts.stable_days:
            ready, why = False, f"observed for {observed} days (< {opts.stable_days})"
        elif quiet < opts.stable_days:
            ready, why = False, f"new destination {quiet} days ago (< {opts.stable_days})"
        else:
            ready, why = True, f"no new destination for {quiet} days"
        out.append(Readiness(name, ready, why, last, observed, would))
    return out


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def charts(conn: sqlite3.Connection, opts: ReviewOptions, top: int = 8) -> Charts:
    """Daily series for the HTML page: bytes out of the top agents (and the rest as
    ``(others)``), new destinations, deny and would_deny — all from the rollups."""
    end = day_number(opts.now.astimezone(UTC).date().isoformat())
    start = end - opts.chart_days + 1
    index = {d: i for i, d in enumerate(range(start, end + 1))}
    n = len(index)
    leaders = queries.top_agents(conn, start, top)
    series = {a: [0] * n for a in leaders}
    for agent, day, up in queries.agent_series(conn, start, leaders):
        if day in index:
            series[agent][index[day]] = up
    fleet, deny, would = [0] * n, [0] * n, [0] * n
    for day, up, d, w in queries.day_totals(conn, start):
        if day in index:
            fleet[index[day]], deny[index[day]], would[index[day]] = up, d, w
    others = [fleet[i] - sum(s[i] for s in series.values()) for i in range(n)]
    out = {a: tuple(v) for a, v in series.items()}
    if any(others):
        out["(others)"] = tuple(others)
    new = [0] * n
    for iso, count in queries.new_destination_days(conn, day_iso(start)):
        if day_number(iso) in index:
            new[index[day_number(iso)]] = count
    return Charts(tuple(day_iso(d) for d in index), out, tuple(new), tuple(deny), tuple(would))
