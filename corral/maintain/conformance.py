"""Quarterly: the policy against what the agents actually did, with the change as a diff.

Sits under ``corral conformance``. Evidence: the behaviour store ``corral learn`` fills (gateway
records and Falco events) and, when given, the images in use (``inventory``). Findings:

- admission exemptions no image in use matches;
- ``processes`` entries never seen in any Falco event of the agent, and processes seen but not
  listed (corral's rules fire on unusual behaviour, so a listed process not seen is weak
  evidence: its removal is held back unless risky changes are included);
- allow entries unused in the window (the review's ``unused_entries``) and wildcards of which
  only a few names below were used (replace with those names);
- Falco exceptions that cannot match any more (agents gone, rule disabled, process now listed)
  or that nothing in the window resembles (Falco does not send what an exception suppresses,
  so this is a prompt to test the exception, not proof);
- learn-mode agents still learning after the window, with the review's readiness verdict.

Suggested edits go through the review's round-trip editor (comments kept) and come out as a
unified diff; ``--apply`` writes only a policy that validates.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from corral.compile.falco_catalog import MINER_BINARIES, PACKAGE_TOOLS, SHELLS
from corral.learn import apply as review_apply
from corral.learn.build import readiness, unused_entries
from corral.learn.report import ReviewOptions
from corral.learn.suggest import Suggestion
from corral.maintain.inventory import exempted
from corral.model.findings import Finding, Rule
from corral.model.policy import Policy
from corral.model.runtime import RuntimeException
from corral.store.access import day_number

WILDCARD_NAMES_MAX = 3  # a wildcard of which at most this many names were used is narrowed
Kind = Literal["add-allow", "remove-allow", "enforce", "add-process", "remove-process",
               "remove-exemption", "remove-exception"]
_RISKY_PROCS = frozenset((*SHELLS, *PACKAGE_TOOLS, *MINER_BINARIES))
_STORE_FIELDS = {"proc.name": 0, "proc.pname": 1, "fd.name": 2, "container.image.repository": 3}

RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("exemption-unused", "warning", "admission exemption no image in use matches",
         "remove it: an unused exemption is a door nobody watches"),
    Rule("process-unobserved", "note", "listed process never seen in the agent's Falco events",
         "if the agent no longer runs it, remove it from processes"),
    Rule("process-unlisted", "warning", "process the agent ran that its processes list lacks",
         "list it if it is expected (its unexpected-process alerts stop), else investigate"),
    Rule("allow-unused", "warning", "allow entry no request used in the window",
         "remove it (least privilege)"),
    Rule("wildcard-wider-than-used", "warning", "wildcard allow entry of which few names were used",
         "replace the wildcard with the names used"),
    Rule("exception-stale", "warning", "Falco exception that cannot match or matched nothing",
         "remove it, or confirm with a test event that it still suppresses what it should"),
    Rule("learn-mode-left", "warning", "agent still in learn mode after the review window",
         "switch egress.mode to enforce when the review says it is ready"),
)}


@dataclass(frozen=True, slots=True)
class Change:
    """One suggested policy edit (egress kinds are applied by the review's editor)."""

    kind: Kind
    agent: str  # agent name, or '' for spec-level edits
    field: str  # allow | mode | processes | <control> | <exception name>
    value: str
    reason: str
    risky: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Conformance:
    findings: tuple[Finding, ...]
    changes: tuple[Change, ...]
    window_days: int


def _since(now: datetime, window: timedelta) -> str:
    return (now - window).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def observed_processes(conn: sqlite3.Connection, since: str) -> dict[str, dict[str, int]]:
    rows = conn.execute("SELECT agent, proc, count FROM proc_total WHERE last_seen >= ? "
                        "AND proc != ''", (since,))
    out: dict[str, dict[str, int]] = {}
    for agent, proc, n in rows:
        out.setdefault(agent, {})[proc] = int(n)
    return out


def alarming_processes(conn: sqlite3.Connection, since: str) -> set[tuple[str, str]]:
    """(agent, process) pairs seen in events of rules other than the unexpected-process one
    (a shell, a package tool, a token read...): never suggested without review."""
    rows = conn.execute("SELECT DISTINCT agent, proc, rule FROM falco_sig WHERE last_seen >= ?",
                        (since,))
    return {(a, p) for a, p, rule in rows if "unexpected process" not in rule}


def check_processes(policy: Policy, seen: dict[str, dict[str, int]],
                    alarming: set[tuple[str, str]]) -> Iterator[tuple[Finding, Change]]:
    for agent in policy.spec.agents:
        ran = seen.get(agent.name, {})
        if not agent.processes and not ran:
            continue
        for proc in agent.processes:
            if proc not in ran:
                yield (Finding("process-unobserved", f"agent {agent.name}", "store",
                               f"{proc} is listed but no Falco event of the agent shows it"),
                       Change("remove-process", agent.name, "processes", proc,
                              "listed, never observed in the window", risky=True))
        for proc in sorted(set(ran) - set(agent.processes)):
            if not agent.processes:
                continue  # no allowlist: every process is expected
            risky = proc in _RISKY_PROCS or (agent.name, proc) in alarming
            yield (Finding("process-unlisted", f"agent {agent.name}", "store",
                           f"{proc} ran {ran[proc]} times and is not in processes"
                           + (" (it tripped other rules, or is a shell, package tool or miner)"
                              if risky else "")),
                   Change("add-process", agent.name, "processes", proc,
                          f"observed {ran[proc]} times", risky=risky))


def _names_below(conn: sqlite3.Connection, agent: str, domain: str,
                 since: str) -> list[str]:
    escaped = domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute("SELECT DISTINCT host FROM dest_total WHERE agent=? AND host LIKE ? "
                        "ESCAPE '\\' AND last_seen >= ? AND n_allow > 0 ORDER BY host",
                        (agent, f"%.{escaped}", since))
    return [r[0] for r in rows]


def check_allow(conn: sqlite3.Connection, policy: Policy, opts: ReviewOptions) -> Iterator[
        tuple[Finding, list[Change]]]:
    unused = {(u.agent, u.entry) for u in unused_entries(conn, policy, opts)}
    for name, entry in sorted(unused):
        fld = "allow_cidrs" if "/" in entry else "allow"
        yield (Finding("allow-unused", f"agent {name}", "store",
                       f"{fld} entry {entry} matched no request in {opts.window.days} days"),
               [Change("remove-allow", name, fld, entry, "unused in the window")])
    for agent in policy.spec.agents:
        for p in agent.egress.allow:
            if not p.wildcard or (agent.name, str(p)) in unused:
                continue
            names = _names_below(conn, agent.name, p.name, opts.since_text)
            if not names or len(names) > WILDCARD_NAMES_MAX:
                continue
            port = f":{p.port}" if p.port is not None else ""
            adds = [Change("add-allow", agent.name, "allow", f"{n}{port}",
                           f"used below {p}") for n in names]
            yield (Finding("wildcard-wider-than-used", f"agent {agent.name}", "store",
                           f"{p} allows any name below {p.name}; only {', '.join(names)} "
                           "were used"),
                   [*adds, Change("remove-allow", agent.name, "allow", str(p),
                                  f"narrowed to {len(names)} names used")])


def check_exemptions(policy: Policy, images: Sequence[str] | None) -> Iterator[
        tuple[Finding, Change]]:
    if images is None:
        return
    controls = policy.spec.admission.controls
    for name in type(controls).model_fields:
        for pattern in getattr(getattr(controls, name), "exempt_images", ()):
            if not any(exempted(img, (pattern,)) for img in images):
                yield (Finding("exemption-unused", f"admission {name}", "policy",
                               f"exempt_images entry {pattern} matches no image in use"),
                       Change("remove-exemption", "", name, pattern, "no image in use matches"))


def _resembles(exc: RuntimeException, sigs: Iterable[tuple[str, str, str, str]]) -> bool | None:
    """Does any stored event signature match every checkable field? None: nothing checkable."""
    checkable = {k: v for k, v in exc.when.items() if k in _STORE_FIELDS}
    if not checkable:
        return None
    for sig in sigs:
        if all(sig[_STORE_FIELDS[k]] in (v if isinstance(v, tuple) else (v,))
               for k, v in checkable.items()):
            return True
    return False


def _exception_problem(policy: Policy, exc: RuntimeException,
                       sigs: dict[str, list[tuple[str, str, str, str]]]) -> str | None:
    names = {a.name for a in policy.spec.agents}
    scope = [a for a in exc.agents if a in names] if exc.agents else sorted(names)
    if exc.agents and not scope:
        return f"names only agents no longer in the policy ({', '.join(exc.agents)})"
    if not policy.spec.runtime.renders(exc.rule):
        return f"its rule kind {exc.rule} is not rendered (spec.runtime)"
    procs = exc.when.get("proc.name")
    if exc.rule == "unexpected_process" and procs is not None:
        values = procs if isinstance(procs, tuple) else (procs,)
        if all(v in policy.spec.agent(a).processes for a in scope for v in values):
            return "every process it names is now in the agents' processes list"
    found = _resembles(exc, [s for a in scope for s in sigs.get(a, [])])
    if found is False:
        return "no event of its agents in the window resembles it"
    return None


def check_exceptions(conn: sqlite3.Connection, policy: Policy, since: str) -> Iterator[
        tuple[Finding, Change]]:
    sigs: dict[str, list[tuple[str, str, str, str]]] = {}
    for agent, *sig in conn.execute("SELECT agent, proc, parent, file, image FROM falco_sig "
                                    "WHERE last_seen >= ?", (since,)):
        sigs.setdefault(agent, []).append((sig[0], sig[1], sig[2], sig[3]))
    for exc in policy.spec.runtime.exceptions:
        why = _exception_problem(policy, exc, sigs)
        if why is not None:
            yield (Finding("exception-stale", f"exception {exc.name}", "policy",
                           f"({exc.rule}) {why}"),
                   Change("remove-exception", "", exc.name, exc.rule, why))


def check_learners(conn: sqlite3.Connection, policy: Policy, opts: ReviewOptions) -> Iterator[
        tuple[Finding, Change | None]]:
    since_day = day_number(opts.since.astimezone(UTC).date().isoformat())
    for r in readiness(conn, policy, opts, since_day):
        if r.observed_days < opts.window.days:
            continue
        yield (Finding("learn-mode-left", f"agent {r.agent}", "policy",
                       f"in learn mode, observed {r.observed_days} days; {r.reason}"),
               Change("enforce", r.agent, "mode", "enforce", r.reason) if r.ready else None)


def conformance(conn: sqlite3.Connection, policy: Policy, *, now: datetime,
                window: timedelta, images: Sequence[str] | None) -> Conformance:
    opts = ReviewOptions(now=now, window=window, unused_days=max(1, window.days))
    since = opts.since_text
    findings: list[Finding] = []
    changes: list[Change] = []
    for f, c in [*check_exemptions(policy, images),
                 *check_processes(policy, observed_processes(conn, since),
                                  alarming_processes(conn, since))]:
        findings.append(f)
        changes.append(c)
    for f, cs in check_allow(conn, policy, opts):
        findings.append(f)
        changes += cs
    for f, c in check_exceptions(conn, policy, since):
        findings.append(f)
        changes.append(c)
    for f, maybe in check_learners(conn, policy, opts):
        findings.append(f)
        changes += [maybe] if maybe else []
    return Conformance(tuple(findings), tuple(changes), window.days)


# -- the edit --------------------------------------------------------------------------------

_EGRESS: frozenset[str] = frozenset({"add-allow", "remove-allow", "enforce"})


def _seq_remove(seq: CommentedSeq | None, value: str) -> bool:
    if seq is None:
        return False
    idx = [i for i, v in enumerate(seq) if str(v) == value]
    for i in reversed(idx):
        review_apply._delete(seq, i)
    return bool(idx)


def _edit_one(doc: Any, c: Change, note: str) -> bool:
    spec = doc["spec"]
    if c.kind in ("add-process", "remove-process"):
        agent = review_apply._agent_node(doc, c.agent)
        if c.kind == "remove-process":
            return _seq_remove(agent.get("processes"), c.value)
        if agent.get("processes") is None:
            agent["processes"] = CommentedSeq()
        if c.value in [str(v) for v in agent["processes"]]:
            return False
        review_apply._append(agent["processes"], c.value, note)
        return True
    if c.kind == "remove-exemption":
        control = ((spec.get("admission") or {}).get("controls") or {}).get(c.field)
        return isinstance(control, CommentedMap) and _seq_remove(
            control.get("exempt_images"), c.value)
    exceptions = (spec.get("runtime") or {}).get("exceptions")
    if not isinstance(exceptions, CommentedSeq):
        return False
    idx = [i for i, e in enumerate(exceptions) if e.get("name") == c.field
           and e.get("rule") == c.value]
    for i in reversed(idx):
        review_apply._delete(exceptions, i)
    return bool(idx)


def edit_policy(text: str, changes: Sequence[Change], *, include_risky: bool = False,
                note: str = "added by corral conformance") -> tuple[str, list[Change]]:
    """The policy text with the changes made (risky ones only with ``include_risky``);
    egress changes go through the review's editor, the rest through the same round trip."""
    chosen = [c for c in changes if include_risky or not c.risky]
    egress = [Suggestion(c.kind, c.agent, c.field, c.value, c.reason)  # type: ignore[arg-type]
              for c in chosen if c.kind in _EGRESS]
    edit = review_apply.apply_suggestions(text, egress, note=note)
    done = [c for c in chosen if c.kind in _EGRESS and any(
        (s.kind, s.agent, s.value) == (c.kind, c.agent, c.value) for s in edit.applied)]
    rest = [c for c in chosen if c.kind not in _EGRESS]
    if not rest:
        return edit.text, done
    y, doc = review_apply._round_trip(edit.text)
    done += [c for c in rest if _edit_one(doc, c, note)]
    return review_apply._dump(y, doc), done
