"""Image inventory: every image in use, per agent and namespace, and what is wrong with it.

Sits under ``corral images`` and ``corral vulns``. Sightings come from three places: manifests
(what is declared), a cluster dump (``kubectl get -A -o json``: what runs, with the digests the
kubelet pulled), and Falco events (what the runtime saw: ``falco_sig`` of the behaviour store and
the event samples of the control plane's incidents). Registry approval uses the same normaliser
and prefixes as admission (``corral.model.images``), tag rules the policy's ``tags`` control.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from corral.model import findings as fnd
from corral.model.findings import Finding, Rule
from corral.model.images import ImageError, ImageRef, parse_image
from corral.model.policy import Policy
from corral.model.wording import counted
from corral.verify.objects import Located, labels_of, pods_of

Source = Literal["manifest", "cluster", "falco"]
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("image-unapproved", "error", "agent image from a registry the policy does not approve",
         "push the image to an approved registry (spec.registries) or approve its location"),
    Rule("image-mutable-tag", "error", "agent image on a mutable tag (e.g. latest)",
         "pin a release tag, better a digest (image@sha256:...)"),
    Rule("image-not-pinned", "warning", "agent image by tag, not by digest",
         "pin by digest so what was scanned is what runs"),
    Rule("image-undeclared", "error", "image running that no manifest declares",
         "find who started it; declare it in the manifests or remove the workload"),
    Rule("image-invalid", "error", "not an image reference the runtime would accept",
         "fix the reference"),
)}


@dataclass(frozen=True, slots=True)
class Sighting:
    """One image seen in one place."""

    image: str  # as written (Falco: repository[:tag])
    namespace: str
    workload: str  # Kind/namespace/name, or the pod Falco named
    agent: str | None
    source: Source
    where: str  # file, dump or store the sighting came from
    repository_only: bool = False  # Falco gave the repository without a tag
    image_id: str = ""  # digest the kubelet reports (cluster dumps)


@dataclass(frozen=True, slots=True)
class ImageEntry:
    """One normalised image and every place it was seen."""

    ref: str  # normalised (registry/repository[:tag][@digest]) or the raw text when invalid
    name: str  # registry/repository
    tag: str | None
    digest: str | None
    approved: bool
    sightings: tuple[Sighting, ...]
    valid: bool = True

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(sorted({s.agent for s in self.sightings if s.agent}))

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(sorted({s.namespace for s in self.sightings if s.namespace}))

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(sorted({s.source for s in self.sightings}))

    def as_dict(self) -> dict[str, Any]:
        return {"image": self.ref, "name": self.name, "tag": self.tag, "digest": self.digest,
                "approved": self.approved, "agents": list(self.agents),
                "namespaces": list(self.namespaces), "sources": list(self.sources),
                "seen": [asdict(s) for s in self.sightings]}


@dataclass(frozen=True, slots=True)
class Inventory:
    images: tuple[ImageEntry, ...]
    findings: tuple[Finding, ...] = field(default=())

    def running(self) -> tuple[ImageEntry, ...]:
        """Images seen running (cluster dump or Falco), or declared when nothing ran."""
        live = tuple(i for i in self.images if {"cluster", "falco"} & set(i.sources))
        return live or self.images


def agent_for(policy: Policy | None, namespace: str, labels: Mapping[str, str]) -> str | None:
    """The agent whose selector matches pod labels in the agents' namespace."""
    if policy is None or namespace != policy.spec.namespace:
        return None
    for agent in policy.spec.agents:
        if all(labels.get(k) == v for k, v in agent.selector.items()):
            return agent.name
    return None


def _containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in _CONTAINER_LISTS:
        for c in spec.get(key) or ():
            if isinstance(c, Mapping) and isinstance(c.get("image"), str):
                yield c


def _image_ids(obj: Mapping[str, Any]) -> dict[str, str]:
    status = obj.get("status") or {}
    out: dict[str, str] = {}
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for st in status.get(key) or ():
            if isinstance(st, Mapping) and st.get("name"):
                out[str(st["name"])] = str(st.get("imageID") or "")
    return out


def from_objects(objs: Iterable[Located], policy: Policy | None,
                 source: Source) -> list[Sighting]:
    """Sightings of every container image of pods and workload templates.

    From a cluster dump every Pod counts (it is what runs), owned or not; from manifests the
    workload templates (``pods_of``)."""
    objs = list(objs)
    out: list[Sighting] = []
    if source == "cluster" and any(o.kind == "Pod" for o in objs):
        pods = [(o, labels_of(o.obj), o.obj.get("spec") or {}) for o in objs if o.kind == "Pod"]
    else:
        pods = [(p.owner, p.labels, p.spec) for p in pods_of(objs)]
    for owner, labels, spec in pods:
        ns = owner.namespace or "default"
        ids = _image_ids(owner.obj) if owner.kind == "Pod" else {}
        agent = agent_for(policy, ns, labels)
        for c in _containers(spec):
            out.append(Sighting(str(c["image"]), ns, owner.ref, agent, source, owner.source,
                                image_id=ids.get(str(c.get("name")), "")))
    return out


def _falco_image(fields: Mapping[str, Any]) -> tuple[str, bool] | None:
    repo = fields.get("container.image.repository")
    tag = fields.get("container.image.tag")
    full = fields.get("container.image")
    if isinstance(repo, str) and repo:
        if isinstance(tag, str) and tag:
            return f"{repo}:{tag}", False
        return repo, True
    if isinstance(full, str) and full:
        return full, False
    return None


def _read_only(path: str | Path) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such store")
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)


def _pod_agent(policy: Policy | None, agent: str | None) -> str | None:
    if policy is None or agent is None:
        return agent
    return agent if agent in {a.name for a in policy.spec.agents} else None


def from_behaviour_store(path: str | Path, policy: Policy | None) -> list[Sighting]:
    """Images of Falco events aggregated by ``corral learn`` (``falco_sig.image``)."""
    conn = _read_only(path)
    try:
        rows = conn.execute("SELECT DISTINCT agent, image FROM falco_sig WHERE image != ''")
        pairs = rows.fetchall()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path}: not a corral behaviour store ({exc})") from None
    finally:
        conn.close()
    ns = policy.spec.namespace if policy else ""
    return [Sighting(img, ns, f"falco:{agent}", _pod_agent(policy, agent), "falco", str(path),
                     repository_only=":" not in img.rpartition("/")[2] and "@" not in img)
            for agent, img in sorted(pairs)]


def from_control_store(path: str | Path, policy: Policy | None) -> list[Sighting]:
    """Images in the Falco event samples of the control plane's incidents (``corral serve``'s
    store, read-only: its ``incidents.doc`` JSON keeps each sample's output fields)."""
    conn = _read_only(path)
    try:
        docs = [r[0] for r in conn.execute("SELECT doc FROM incidents")]
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path}: not a corral control-plane store ({exc})") from None
    finally:
        conn.close()
    seen: dict[tuple[str, str, str, str | None], bool] = {}
    for raw in docs:
        doc = orjson.loads(raw)
        for sample in doc.get("samples") or ():
            fields = sample.get("fields") if isinstance(sample, Mapping) else None
            found = _falco_image(fields) if isinstance(fields, Mapping) else None
            if found is None:
                continue
            pod = str(sample.get("pod") or doc.get("pod") or "")
            ns = str(sample.get("namespace") or doc.get("namespace") or "")
            agent = _pod_agent(policy, sample.get("agent") or doc.get("agent"))
            seen[(found[0], ns, f"Pod/{ns}/{pod}" if pod else "falco", agent)] = found[1]
    return [Sighting(img, ns, wl, agent, "falco", str(path), repository_only=repo_only)
            for (img, ns, wl, agent), repo_only in sorted(seen.items(), key=_key)]


def _key(item: tuple[tuple[str, str, str, str | None], bool]) -> tuple[str, ...]:
    (img, ns, wl, agent), _ = item
    return img, ns, wl, agent or ""


def exempted(image: str, patterns: Iterable[str]) -> bool:
    """Admission's exemption test on the raw reference: exact, or a prefix ending in ``*``."""
    return any(image.startswith(p[:-1]) if p.endswith("*") else image == p for p in patterns)


def _parse(s: Sighting) -> ImageRef | None:
    try:
        ref = parse_image(s.image)
    except ImageError:
        return None
    return ImageRef(ref.registry, ref.repository, None, None) if s.repository_only else ref


def build(sightings: Iterable[Sighting], policy: Policy | None) -> Inventory:
    """Group sightings by normalised image and list the findings. A Falco sighting without a
    tag joins the images of the same repository seen elsewhere (it is one of them)."""
    groups: dict[str, list[Sighting]] = {}
    refs: dict[str, ImageRef | None] = {}
    loose: list[tuple[ImageRef, Sighting]] = []
    for s in sightings:
        ref = _parse(s)
        if ref is not None and s.repository_only:
            loose.append((ref, s))
            continue
        key = str(ref) if ref is not None else s.image
        groups.setdefault(key, []).append(s)
        refs[key] = ref
    for ref, s in loose:
        same = [k for k, r in refs.items() if r is not None and r.name == ref.name]
        for key in same or [ref.name]:
            groups.setdefault(key, []).append(s)
            refs.setdefault(key, ref)
    prefixes = policy.spec.registries if policy else ()
    entries = []
    for key in sorted(groups):
        ref = refs[key]
        approved = ref is not None and any(p.admits(ref) for p in prefixes)
        entries.append(ImageEntry(key, ref.name if ref else key, ref.tag if ref else None,
                                  ref.digest if ref else None, approved, tuple(groups[key]),
                                  valid=ref is not None))
    return Inventory(tuple(entries), tuple(_findings(entries, policy)))


def _findings(entries: list[ImageEntry], policy: Policy | None) -> Iterator[Finding]:
    declared = [e for e in entries if "manifest" in e.sources]
    covered = {s.namespace for e in declared for s in e.sightings if s.source == "manifest"}
    for e in entries:
        first = e.sightings[0]
        obj = ", ".join(sorted({s.workload for s in e.sightings}))
        if not e.valid:
            yield Finding("image-invalid", e.ref, first.where, f"{e.ref!r} does not parse")
            continue
        if declared and "manifest" not in e.sources and set(e.namespaces) & covered:
            yield Finding("image-undeclared", e.ref, first.where,
                          f"seen by {'/'.join(e.sources)} in {obj}; no manifest declares it")
        if policy is not None and e.agents:
            yield from _agent_findings(e, policy, obj)


def _agent_findings(e: ImageEntry, policy: Policy, obj: str) -> Iterator[Finding]:
    controls = policy.spec.admission.controls
    raw = [s.image for s in e.sightings if s.agent]
    who = f"agent {', '.join(e.agents)} ({obj})"
    if controls.registries.enabled and not e.approved \
            and not all(exempted(r, controls.registries.exempt_images) for r in raw):
        allowed = ", ".join(str(p) for p in policy.spec.registries) or "none"
        yield Finding("image-unapproved", e.ref, e.sightings[0].where,
                      f"{who}: {e.name} is under none of the approved registries ({allowed})")
    if e.tag is not None and e.tag in controls.tags.disallowed and e.digest is None:
        yield Finding("image-mutable-tag", e.ref, e.sightings[0].where,
                      f"{who}: tag {e.tag!r} can point at a different image tomorrow")
    elif e.tag is not None and e.digest is None:
        yield Finding("image-not-pinned", e.ref, e.sightings[0].where,
                      f"{who}: tag {e.tag!r} without a digest")


def _pin(e: ImageEntry) -> str:
    if e.digest:
        return "digest"
    return "repository only" if e.tag is None else f"tag {e.tag}"


def to_text(inv: Inventory) -> str:
    """One block per agent (then per other namespace), one line per image."""
    groups: dict[str, list[ImageEntry]] = {}
    for e in inv.images:
        keys = [f"agent {a}" for a in e.agents] or [f"namespace {n}" for n in e.namespaces] \
            or ["(no namespace)"]
        for k in keys:
            groups.setdefault(k, []).append(e)
    lines: list[str] = []
    for title in sorted(groups, key=lambda t: (not t.startswith("agent"), t)):
        lines.append(title)
        for e in groups[title]:
            approved = "approved" if e.approved else "NOT approved"
            lines.append(f"  {e.ref}  [{approved}; {_pin(e)}; seen in {', '.join(e.sources)}]")
    errors = sum(RULES[f.rule].level == "error" for f in inv.findings)
    return ("\n".join(lines) + "\n\n" + fnd.to_text(inv.findings, RULES)
            + f"{counted(len(inv.images), 'image')}: {counted(errors, 'error')}, "
              f"{counted(len(inv.findings) - errors, 'warning')}\n")
