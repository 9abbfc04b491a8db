"""Scanner reports as corral reads them: Trivy JSON, Grype JSON, CycloneDX with
vulnerabilities, and SARIF (Trivy's and Grype's), each turned into one ``ScanReport``.

corral does not scan by itself (no vulnerability database can be fetched where it runs); it reads
what the scanners wrote. Sits under ``corral.maintain.vulns``. The format is recognised from the
document's own markers (``SchemaVersion``/``Results``, ``matches``/``descriptor``,
``bomFormat``, ``runs``); anything else is a ``ReportError`` naming the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
_GRYPE_FIXED = "fixed"
_FIXED_LINE = re.compile(r"^Fixed Version:\s*(\S.*)$", re.MULTILINE)
_SEVERITY_LINE = re.compile(r"^Severity:\s*(\w+)", re.MULTILINE)
_PACKAGE_LINE = re.compile(r"^Package:\s*(\S+)", re.MULTILINE)


class ReportError(ValueError):
    """Not a scanner report corral reads; the message names the file and what was expected."""


@dataclass(frozen=True, slots=True)
class Vuln:
    id: str
    severity: str  # one of SEVERITIES
    package: str
    installed: str
    fixed: str | None  # the version that fixes it, when the scanner knows one
    published: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.id, self.package


@dataclass(frozen=True, slots=True)
class ScanReport:
    path: str
    scanner: str
    format: str  # trivy-json | grype-json | cyclonedx | sarif
    image: str  # the reference the scanner was given
    digests: tuple[str, ...]  # repo digests (sha256:...) the scanner saw
    created: datetime
    created_basis: str  # report | file-mtime
    vulns: tuple[Vuln, ...]


def severity(text: object) -> str:
    value = str(text or "").strip().lower()
    if value == "negligible":
        return "low"
    return value if value in SEVERITIES else "unknown"


def _time(text: object) -> datetime | None:
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _digests(values: Iterable[object]) -> tuple[str, ...]:
    out = []
    for v in values:
        if isinstance(v, str) and "sha256:" in v:
            out.append("sha256:" + v.rpartition("sha256:")[2])
    return tuple(sorted(set(out)))


def _trivy(doc: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...], object, list[Vuln]]:
    meta = doc.get("Metadata") or {}
    vulns = [Vuln(str(v.get("VulnerabilityID")), severity(v.get("Severity")),
                  str(v.get("PkgName") or ""), str(v.get("InstalledVersion") or ""),
                  str(v.get("FixedVersion")) if v.get("FixedVersion") else None,
                  str(v.get("PublishedDate")) if v.get("PublishedDate") else None)
             for r in doc.get("Results") or () for v in (r.get("Vulnerabilities") or ())]
    digests = _digests(meta.get("RepoDigests") or ())  # ImageID is the config, not the manifest
    return "trivy", str(doc.get("ArtifactName") or ""), digests, doc.get("CreatedAt"), vulns


def _grype(doc: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...], object, list[Vuln]]:
    target = (doc.get("source") or {}).get("target") or {}
    if isinstance(target, str):
        target = {"userInput": target}
    vulns = []
    for m in doc.get("matches") or ():
        v, art = m.get("vulnerability") or {}, m.get("artifact") or {}
        fix = v.get("fix") or {}
        versions = [str(x) for x in fix.get("versions") or ()]
        fixed = ", ".join(versions) if fix.get("state") == _GRYPE_FIXED and versions else None
        vulns.append(Vuln(str(v.get("id")), severity(v.get("severity")),
                          str(art.get("name") or ""), str(art.get("version") or ""), fixed))
    digests = _digests([*(target.get("repoDigests") or ()), target.get("manifestDigest")])
    image = str(target.get("userInput") or next(iter(target.get("tags") or ()), ""))
    when = (doc.get("descriptor") or {}).get("timestamp")
    return "grype", image, digests, when, vulns


def _cyclonedx(doc: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...], object, list[Vuln]]:
    meta = doc.get("metadata") or {}
    comp = meta.get("component") or {}
    tools = meta.get("tools") or []
    if isinstance(tools, Mapping):  # CycloneDX 1.5: tools.components
        tools = tools.get("components") or []
    scanner = next((str(t.get("name")) for t in tools if isinstance(t, Mapping)), "cyclonedx")
    packages = {str(c.get("bom-ref")): c for c in doc.get("components") or ()}
    vulns = []
    for v in doc.get("vulnerabilities") or ():
        ratings = [severity(r.get("severity")) for r in v.get("ratings") or ()]
        worst = min(ratings, key=SEVERITIES.index, default="unknown")
        fixed = v.get("recommendation") or _unaffected(v)
        for ref in v.get("affects") or [{}]:
            pkg = packages.get(str(ref.get("ref")), {})
            vulns.append(Vuln(str(v.get("id")), worst, str(pkg.get("name") or ref.get("ref")
                                                            or ""),
                              str(pkg.get("version") or ""), str(fixed) if fixed else None,
                              v.get("published")))
    props = {p.get("name"): p.get("value") for p in comp.get("properties") or ()}
    digests = _digests([comp.get("purl"), *(v for k, v in props.items()
                                            if str(k).endswith("RepoDigest"))])
    return scanner.lower(), str(comp.get("name") or ""), digests, meta.get("timestamp"), vulns


def _unaffected(v: Mapping[str, Any]) -> str | None:
    for ref in v.get("affects") or ():
        for ver in ref.get("versions") or ():
            if ver.get("status") == "unaffected" and ver.get("version"):
                return str(ver["version"])
    return None


def _sarif_severity(rule: Mapping[str, Any], text: str) -> str:
    m = _SEVERITY_LINE.search(text)
    if m:
        return severity(m.group(1))
    raw = (rule.get("properties") or {}).get("security-severity")
    try:
        score = float(raw) if isinstance(raw, int | float | str) else 0.0
    except ValueError:
        return "unknown"
    for floor, name in ((9.0, "critical"), (7.0, "high"), (4.0, "medium"), (0.1, "low")):
        if score >= floor:
            return name
    return "unknown"


def _sarif(doc: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...], object, list[Vuln]]:
    runs = doc.get("runs") or []
    if len(runs) != 1:
        raise ValueError("expected one SARIF run (one image per report)")
    run = runs[0]
    driver = (run.get("tool") or {}).get("driver") or {}
    props = run.get("properties") or {}
    image = str(props.get("imageName") or "")
    if not image:
        raise ValueError("the SARIF run names no image (run.properties.imageName, as Trivy "
                         "writes it); scan with Trivy's SARIF output or use JSON")
    rules = {str(r.get("id")): r for r in driver.get("rules") or ()}
    vulns = []
    for res in run.get("results") or ():
        rule = rules.get(str(res.get("ruleId")), {})
        text = str((res.get("message") or {}).get("text") or "")
        pkg = _PACKAGE_LINE.search(text)
        fixed = _FIXED_LINE.search(text)
        vulns.append(Vuln(str(res.get("ruleId")), _sarif_severity(rule, text),
                          pkg.group(1) if pkg else "", "",
                          fixed.group(1).strip() if fixed else None))
    when = next((i.get("endTimeUtc") for i in run.get("invocations") or ()), None)
    digests = _digests(props.get("repoDigests") or ())
    return str(driver.get("name") or "sarif").lower(), image, digests, when, vulns


def _kind(doc: Any) -> str:
    if isinstance(doc, Mapping):
        if "SchemaVersion" in doc and "ArtifactName" in doc:
            return "trivy-json"
        if "matches" in doc and ("descriptor" in doc or "source" in doc):
            return "grype-json"
        if doc.get("bomFormat") == "CycloneDX":
            return "cyclonedx"
        if "runs" in doc and str(doc.get("version", "")).startswith("2."):
            return "sarif"
    raise ReportError("expected a Trivy JSON, Grype JSON, CycloneDX or SARIF report")


_READERS = {"trivy-json": _trivy, "grype-json": _grype, "cyclonedx": _cyclonedx,
            "sarif": _sarif}


def read_report(path: Path) -> ScanReport:
    """One report file; ``ReportError`` says why it cannot be read."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        fmt = _kind(doc)
        scanner, image, digests, when, vulns = _READERS[fmt](doc)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not a JSON report ({exc})") from None
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise ReportError(f"{path}: malformed report ({exc})") from None
    if not image:
        raise ReportError(f"{path}: the report names no image")
    created = _time(when)
    basis = "report"
    if created is None:
        created, basis = datetime.fromtimestamp(path.stat().st_mtime, UTC), "file-mtime"
    return ScanReport(str(path), scanner, fmt, image, digests, created, basis, tuple(vulns))


def read_reports(paths: Iterable[str], skipped: list[str] | None = None) -> list[ScanReport]:
    """Every report in files and folders (``*.json``, ``*.sarif`` below a folder). A file named
    explicitly must be a report; one found in a folder that is not is skipped (its path and
    why appended to ``skipped``)."""
    out: list[ScanReport] = []
    for p in paths:
        path = Path(p)
        if path.is_file():
            out.append(read_report(path))
        elif path.is_dir():
            for f in sorted(f for f in path.rglob("*") if f.suffix in (".json", ".sarif")
                            and f.is_file()):
                try:
                    out.append(read_report(f))
                except ReportError as exc:
                    if skipped is not None:
                        skipped.append(str(exc))
        else:
            raise ReportError(f"{p}: no such file or directory (expected scanner reports)")
    return out
