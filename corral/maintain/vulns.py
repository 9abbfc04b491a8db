"""Vulnerabilities of the images agents run: scanner reports joined with the image inventory.

Sits between ``reports`` (what the scanners wrote) and ``corral vulns``. For each image an
agent runs: the newest report that is fresh enough (older ones are flagged ``stale`` and not
trusted), its critical and high findings with fix availability and how long the image has
carried them (the first report, this month's or an earlier set's, that showed it), and what
changed against last month's set. Pure over its inputs; ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from corral.maintain.inventory import ImageEntry, Inventory
from corral.maintain.reports import ScanReport, Vuln
from corral.model.findings import Finding, Rule
from corral.model.images import ImageError, ImageRef, parse_image
from corral.model.wording import counted

SERIOUS = ("critical", "high")

RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("vuln-critical", "error", "running agent image with a critical vulnerability",
         "rebuild on the fixed package version and roll out; if no fix exists, weigh removing "
         "the package or narrowing what the agent may reach"),
    Rule("vuln-high", "error", "running agent image with a high vulnerability",
         "rebuild on the fixed package version and roll out"),
    Rule("vuln-report-stale", "error", "the newest scan of an agent image is too old to trust",
         "scan again (the scanner CronJob corral vulns --render-scanner writes)"),
    Rule("vuln-unscanned", "error", "agent image with no scanner report",
         "add it to the scanner's image list (corral vulns --render-scanner) and scan"),
)}


@dataclass(frozen=True, slots=True)
class Exposure:
    """One serious vulnerability of one running agent image."""

    image: str
    agents: tuple[str, ...]
    vuln: Vuln
    scanners: tuple[str, ...]
    since: datetime  # first report that showed it
    days: int

    def as_dict(self) -> dict[str, Any]:
        v = self.vuln
        return {"image": self.image, "agents": list(self.agents), "id": v.id,
                "severity": v.severity, "package": v.package, "installed": v.installed,
                "fixed": v.fixed, "fix_available": v.fixed is not None,
                "published": v.published, "scanners": list(self.scanners),
                "exposed_since": self.since.isoformat(), "exposed_days": self.days}


@dataclass(frozen=True, slots=True)
class Change:
    """What changed for one image name against the previous report set."""

    image: str
    new: tuple[Vuln, ...]
    fixed: tuple[Vuln, ...]
    first_scan: bool = False  # not in the previous set at all

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.image, "first_scan": self.first_scan,
                "new": [{"id": v.id, "severity": v.severity, "package": v.package}
                        for v in self.new],
                "gone": [{"id": v.id, "severity": v.severity, "package": v.package}
                         for v in self.fixed]}


@dataclass(frozen=True, slots=True)
class VulnReport:
    exposures: tuple[Exposure, ...]
    changes: tuple[Change, ...]
    stale: tuple[ScanReport, ...]
    unscanned: tuple[str, ...]
    used: tuple[ScanReport, ...]
    findings: tuple[Finding, ...] = field(default=())


def _ref(text: str) -> ImageRef | None:
    try:
        return parse_image(text)
    except ImageError:
        return None


def _digests(entry: ImageEntry) -> set[str]:
    out = {entry.digest} if entry.digest else set()
    for s in entry.sightings:
        if "sha256:" in s.image_id:
            out.add("sha256:" + s.image_id.rpartition("sha256:")[2])
    return out


def covers(report: ScanReport, entry: ImageEntry) -> bool:
    """The report scanned this image: same digest, or same name and tag (or the same full
    reference)."""
    if set(report.digests) & _digests(entry):
        return True
    ref = _ref(report.image)
    if ref is None or ref.name != entry.name:
        return False
    if entry.digest and ref.digest:
        return ref.digest == entry.digest
    return ref.tag == entry.tag or entry.tag is None


def _merge(reports: Sequence[ScanReport]) -> dict[tuple[str, str], tuple[Vuln, list[str]]]:
    """Vulnerabilities of several scanners of one image, one entry per (id, package)."""
    out: dict[tuple[str, str], tuple[Vuln, list[str]]] = {}
    for r in reports:
        for v in r.vulns:
            have = out.get(v.key)
            if have is None:
                out[v.key] = (v, [r.scanner])
                continue
            best = have[0] if have[0].fixed or not v.fixed else v
            out[v.key] = (best, sorted({*have[1], r.scanner}))
    return out


def _first_seen(key: tuple[str, str], name: str, history: Iterable[ScanReport]) -> datetime | None:
    times = [r.created for r in history if any(v.key == key for v in r.vulns)
             and (ref := _ref(r.image)) is not None and ref.name == name]
    return min(times, default=None)


def analyse(inv: Inventory, current: Sequence[ScanReport], previous: Sequence[ScanReport], *,
            now: datetime, max_age: timedelta) -> VulnReport:
    """Join reports with the running agent images (see the module docstring)."""
    fresh = [r for r in current if now - r.created <= max_age]
    stale = tuple(r for r in current if now - r.created > max_age)
    exposures: list[Exposure] = []
    findings: list[Finding] = []
    unscanned: list[str] = []
    used: list[ScanReport] = []
    for entry in (e for e in inv.running() if e.agents):
        mine = [r for r in fresh if covers(r, entry)]
        if not mine:
            old = [r for r in stale if covers(r, entry)]
            findings.append(_missing(entry, old, now))
            unscanned.append(entry.ref)
            continue
        used += mine
        for key, (v, scanners) in sorted(_merge(mine).items()):
            if v.severity not in SERIOUS:
                continue
            since = _first_seen(key, entry.name, [*current, *previous]) or now
            exp = Exposure(entry.ref, entry.agents, v, tuple(scanners), since,
                           max(0, (now - since).days))
            exposures.append(exp)
            findings.append(_exposure_finding(exp, mine))
    changes = tuple(_changes(current, previous))
    return VulnReport(tuple(exposures), changes, stale, tuple(unscanned), tuple(used),
                      tuple(findings))


def _missing(entry: ImageEntry, old: list[ScanReport], now: datetime) -> Finding:
    who = f"agent {', '.join(entry.agents)}"
    if old:
        newest = max(old, key=lambda r: r.created)
        return Finding("vuln-report-stale", entry.ref, newest.path,
                       f"{who}: newest report ({newest.scanner}) is "
                       f"{(now - newest.created).days} days old; its findings are not trusted")
    return Finding("vuln-unscanned", entry.ref, "(no report)", f"{who}: no scanner report")


def _exposure_finding(exp: Exposure, reports: list[ScanReport]) -> Finding:
    v = exp.vuln
    fix = f"fixed in {v.fixed}" if v.fixed else "no fix yet"
    return Finding(f"vuln-{v.severity}", exp.image, reports[0].path,
                   f"agent {', '.join(exp.agents)}: {v.id} in {v.package} {v.installed} "
                   f"({fix}; exposed {exp.days} days, {'/'.join(exp.scanners)})")


def _by_name(reports: Iterable[ScanReport]) -> dict[str, dict[tuple[str, str], Vuln]]:
    out: dict[str, dict[tuple[str, str], Vuln]] = {}
    for r in reports:
        ref = _ref(r.image)
        name = ref.name if ref else r.image
        for v in r.vulns:
            out.setdefault(name, {})[v.key] = v
    return out


def _changes(current: Sequence[ScanReport], previous: Sequence[ScanReport]) -> Iterator[Change]:
    if not previous:
        return
    now, then = _by_name(current), _by_name(previous)
    for name in sorted(set(now) | set(then)):
        a, b = now.get(name, {}), then.get(name, {})
        new = tuple(a[k] for k in sorted(set(a) - set(b)))
        gone = tuple(b[k] for k in sorted(set(b) - set(a)))
        if new or gone:
            yield Change(name, new, gone, first_scan=name not in then)


def to_dict(rep: VulnReport, rules: dict[str, Rule]) -> dict[str, Any]:
    return {"exposures": [e.as_dict() for e in rep.exposures],
            "changes_since_previous": [c.as_dict() for c in rep.changes],
            "stale_reports": [{"path": r.path, "image": r.image, "scanner": r.scanner,
                               "created": r.created.isoformat()} for r in rep.stale],
            "unscanned": list(rep.unscanned),
            "reports_used": sorted({r.path for r in rep.used}),
            "findings": [f.as_dict(rules) for f in rep.findings]}


def to_text(rep: VulnReport) -> str:
    lines = []
    for e in rep.exposures:
        v = e.vuln
        fix = f"fix: {v.fixed}" if v.fixed else "no fix"
        lines.append(f"{v.severity.upper():<8} {v.id:<18} {e.image}  {v.package} {v.installed}"
                     f"  [{fix}; {e.days} days; agents {', '.join(e.agents)}]")
    for r in rep.stale:
        lines.append(f"STALE    {r.image}: {r.path} ({r.scanner}, {r.created:%Y-%m-%d}) "
                     "not trusted")
    lines += [f"NO SCAN  {img}: no trusted report" for img in rep.unscanned]
    for c in rep.changes:
        first = " (first scan)" if c.first_scan else ""
        lines.append(f"changed  {c.image}{first}: +{len(c.new)} new "
                     f"({', '.join(v.id for v in c.new) or '-'}), -{len(c.fixed)} gone "
                     f"({', '.join(v.id for v in c.fixed) or '-'})")
    crit = sum(e.vuln.severity == "critical" for e in rep.exposures)
    lines.append(f"{counted(len(rep.exposures), 'serious finding')} on running agent images "
                 f"({crit} critical), {counted(len(rep.stale), 'stale report')}, "
                 f"{counted(len(rep.unscanned), 'image')} without a trusted scan")
    return "\n".join(lines) + "\n"
