"""Scanner reports of the fleet's images, written as Trivy and Grype write them (their JSON, plus
Trivy's CycloneDX and SARIF), for this month and last month.

This month (scans of 2026-11-30): research by digest in Trivy JSON (CVE-2026-1001 critical,
fixed in 3.0.15; CVE-2026-1002 high, no fix; a medium) and in Grype JSON (CVE-2026-1001 again);
coder:latest in Grype JSON (CVE-2026-2001 high, fixed); the gateway in CycloneDX; kali in
Trivy SARIF (a critical); python:3.12 (the debug pod) only in a Trivy report of 2026-08-01:
stale. Last month (2026-10-31): research had CVE-2026-1002 and CVE-2026-0999 (fixed since);
coder had nothing serious.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.maintain.fleet import CODER_DIGEST, RESEARCH_DIGEST

RESEARCH = "registry.example.com/agents/research"
CODER = "ghcr.io/corral-dev/coder"


def _tv(vid: str, pkg: str, installed: str, fixed: str | None, sev: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "VulnerabilityID": vid, "PkgID": f"{pkg}@{installed}", "PkgName": pkg,
        "InstalledVersion": installed, "Status": "fixed" if fixed else "affected",
        "Layer": {"DiffID": "sha256:" + "5e" * 32}, "SeveritySource": "debian",
        "PrimaryURL": f"https://avd.aquasec.com/nvd/{vid.lower()}",
        "Title": f"{pkg}: flaw", "Severity": sev, "PublishedDate": "2026-10-02T15:15:00Z",
        "LastModifiedDate": "2026-11-20T10:00:00Z"}
    if fixed:
        out["FixedVersion"] = fixed
    return out


def trivy(image: str, digest: str, created: str, vulns: list[dict[str, Any]]) -> dict[str, Any]:
    name = image.split("@", maxsplit=1)[0]
    return {
        "SchemaVersion": 2, "CreatedAt": created, "ArtifactName": image,
        "ArtifactType": "container_image",
        "Metadata": {"Size": 81234567, "OS": {"Family": "debian", "Name": "12.8"},
                     "ImageID": "sha256:" + "ff" * 32, "DiffIDs": ["sha256:" + "5e" * 32],
                     "RepoTags": [name], "RepoDigests": [f"{name.rsplit(':', 1)[0]}@{digest}"],
                     "ImageConfig": {"architecture": "amd64", "os": "linux"}},
        "Results": [{"Target": f"{image} (debian 12.8)", "Class": "os-pkgs", "Type": "debian",
                     "Vulnerabilities": vulns},
                    {"Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg"}]}


def _gm(vid: str, pkg: str, version: str, fixed: str | None, sev: str) -> dict[str, Any]:
    return {"vulnerability": {
                "id": vid, "dataSource": f"https://security-tracker.debian.org/tracker/{vid}",
                "namespace": "debian:distro:debian:12", "severity": sev, "urls": [],
                "cvss": [], "fix": {"versions": [fixed] if fixed else [],
                                    "state": "fixed" if fixed else "not-fixed"},
                "advisories": []},
            "relatedVulnerabilities": [],
            "matchDetails": [{"type": "exact-direct-match", "matcher": "dpkg-matcher",
                              "searchedBy": {"distro": {"type": "debian", "version": "12"}},
                              "found": {"vulnerabilityID": vid}}],
            "artifact": {"id": f"{pkg}-id", "name": pkg, "version": version, "type": "deb",
                         "locations": [{"path": "/var/lib/dpkg/status"}], "language": "",
                         "licenses": [], "cpes": [], "purl": f"pkg:deb/debian/{pkg}@{version}",
                         "upstreams": []}}


def grype(image: str, digest: str, when: str, matches: list[dict[str, Any]]) -> dict[str, Any]:
    name = image.split("@", maxsplit=1)[0].rsplit(":", 1)[0]
    return {"matches": matches, "ignoredMatches": [],
            "source": {"type": "image", "target": {
                "userInput": image, "imageID": "sha256:" + "ee" * 32, "manifestDigest": digest,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "tags": [image], "imageSize": 91234567, "layers": [],
                "repoDigests": [f"{name}@{digest}"], "architecture": "amd64", "os": "linux"}},
            "distro": {"name": "debian", "version": "12", "idLike": []},
            "descriptor": {"name": "grype", "version": "0.86.1", "configuration": {},
                           "db": {"built": "2026-11-29T01:31:00Z", "schemaVersion": 5},
                           "timestamp": when}}


def cyclonedx(image: str, when: str) -> dict[str, Any]:
    ref = "pkg:deb/debian/zlib1g@1.2.13"
    return {"$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
            "bomFormat": "CycloneDX", "specVersion": "1.5",
            "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79", "version": 1,
            "metadata": {"timestamp": when,
                         "tools": {"components": [{"type": "application", "group": "aquasecurity",
                                                   "name": "trivy", "version": "0.58.1"}]},
                         "component": {"bom-ref": "pkg:oci/corral", "type": "container",
                                       "name": image, "purl": "pkg:oci/corral@sha256%3A"
                                       + "0d" * 32, "properties": [
                                           {"name": "aquasecurity:trivy:SchemaVersion",
                                            "value": "2"}]}},
            "components": [{"bom-ref": ref, "type": "library", "name": "zlib1g",
                            "version": "1.2.13", "purl": ref}],
            "vulnerabilities": [{"id": "CVE-2026-3001", "source": {"name": "debian"},
                                 "ratings": [{"source": {"name": "nvd"}, "score": 8.1,
                                              "severity": "high", "method": "CVSSv31"}],
                                 "recommendation": "Upgrade zlib1g to version 1.2.13.dfsg-2",
                                 "published": "2026-11-01T00:00:00+00:00",
                                 "affects": [{"ref": ref, "versions": [
                                     {"version": "1.2.13", "status": "affected"}]}]}]}


def sarif(image: str, when: str) -> dict[str, Any]:
    text = ("Package: xz-utils\nInstalled Version: 5.4.1\nVulnerability CVE-2026-4001\n"
            "Severity: CRITICAL\nFixed Version: 5.4.1-1\nLink: [CVE-2026-4001]"
            "(https://avd.aquasec.com/nvd/cve-2026-4001)")
    return {"version": "2.1.0",
            "$schema": "https://json.schemastore.org/sarif-2.1.0-rtm.5.json",
            "runs": [{"tool": {"driver": {
                "fullName": "Trivy Vulnerability Scanner", "informationUri":
                "https://github.com/aquasecurity/trivy", "name": "Trivy", "version": "0.58.1",
                "rules": [{"id": "CVE-2026-4001", "name": "OsPackageVulnerability",
                           "shortDescription": {"text": "xz: backdoor"},
                           "properties": {"precision": "very-high",
                                          "security-severity": "10.0",
                                          "tags": ["vulnerability", "security", "CRITICAL"]}}]}},
                "results": [{"ruleId": "CVE-2026-4001", "ruleIndex": 0, "level": "error",
                             "message": {"text": text}, "locations": [{"physicalLocation": {
                                 "artifactLocation": {"uri": "kalilinux/kali-rolling",
                                                      "uriBaseId": "ROOTPATH"},
                                 "region": {"startLine": 1}}}]}],
                "columnKind": "utf16CodeUnits",
                "invocations": [{"executionSuccessful": True, "endTimeUtc": when}],
                "originalUriBaseIds": {"ROOTPATH": {"uri": "file:///"}},
                "properties": {"imageName": image, "repoDigests": [], "repoTags": [image]}}]}


def _write(folder: Path, name: str, doc: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(doc, indent=2))


def write_this_month(folder: Path) -> Path:
    when = "2026-11-30T03:12:44.123456789Z"
    research = f"{RESEARCH}:1.4@{RESEARCH_DIGEST}"
    _write(folder, "research.trivy.json", trivy(research, RESEARCH_DIGEST, when, [
        _tv("CVE-2026-1001", "openssl", "3.0.14-1", "3.0.15-1", "CRITICAL"),
        _tv("CVE-2026-1002", "libexpat1", "2.5.0-1", None, "HIGH"),
        _tv("CVE-2026-1003", "tar", "1.34", "1.34+dfsg-1.2", "MEDIUM")]))
    _write(folder, "research.grype.json", grype(research, RESEARCH_DIGEST,
                                                "2026-11-30T03:20:00.5Z", [
        _gm("CVE-2026-1001", "openssl", "3.0.14-1", "3.0.15-1", "Critical"),
        _gm("CVE-2026-1004", "libc6", "2.36-9", None, "Negligible")]))
    _write(folder, "coder.grype.json", grype(f"{CODER}:latest", CODER_DIGEST,
                                             "2026-11-30T03:25:00Z", [
        _gm("CVE-2026-2001", "git", "1:2.39.2-1", "1:2.39.5-0", "High")]))
    _write(folder, "gateway.cdx.json", cyclonedx("ghcr.io/corral-dev/corral:0.1.0",
                                                 "2026-11-30T03:30:00+00:00"))
    _write(folder, "kali.sarif", sarif("docker.io/kalilinux/kali-rolling:latest",
                                       "2026-11-30T03:40:00Z"))
    _write(folder, "python.trivy.json", trivy(
        "python:3.12", "sha256:" + "9e" * 32, "2026-08-01T03:00:00Z",
        [_tv("CVE-2026-0500", "openssl", "3.0.11", "3.0.13", "CRITICAL")]))
    return folder


def write_last_month(folder: Path) -> Path:
    research = f"{RESEARCH}:1.4@{RESEARCH_DIGEST}"
    _write(folder, "research.trivy.json", trivy(research, RESEARCH_DIGEST,
                                                "2026-10-31T03:10:00Z", [
        _tv("CVE-2026-1002", "libexpat1", "2.5.0-1", None, "HIGH"),
        _tv("CVE-2026-0999", "curl", "7.88.1-10", "7.88.1-10+deb12u8", "HIGH")]))
    _write(folder, "coder.grype.json", grype(f"{CODER}:latest", CODER_DIGEST,
                                             "2026-10-31T03:25:00Z", []))
    return folder
