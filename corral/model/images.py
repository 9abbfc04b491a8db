"""Container image references and approved-registry prefixes, normalised before any match.

``nginx`` is ``docker.io/library/nginx:latest``; a registry may carry a port; a digest is kept.
Prefixes match on ``/`` boundaries, so ``registry.example.com`` never admits
``registry.example.com.evil.io/x``. The admission compilers emit the same rules in CEL and Rego;
this module is the reference they are tested against. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_REGISTRY = "docker.io"
_LEGACY_REGISTRIES = {"index.docker.io": "docker.io", "registry-1.docker.io": "docker.io"}
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_REGISTRY = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")


class ImageError(ValueError):
    """Not an image reference or registry prefix; the message says what was expected."""


def _is_registry(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


@dataclass(frozen=True, slots=True)
class ImageRef:
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def parse_image(reference: str) -> ImageRef:
    """Parse and normalise a reference as the container runtime would resolve it.

    A reference with neither tag nor digest gets ``latest`` (that is what is pulled).
    """
    ref = reference.strip()
    if not ref or ref != reference or any(c.isspace() for c in ref) or not ref.isascii():
        # Non-ASCII is refused before lower-casing: the Kelvin sign lower-cases to 'k'.
        raise ImageError(f"{reference!r} is not an image reference")
    rest, _, digest = ref.partition("@")
    if digest and not _DIGEST.match(digest):
        raise ImageError(f"{reference!r} has a malformed digest {digest!r}")
    head, slash, last = rest.rpartition("/")
    tag: str | None = None
    if ":" in last:
        last, _, tag = last.partition(":")
        if not _TAG.match(tag):
            raise ImageError(f"{reference!r} has a malformed tag {tag!r}")
    # "/x" has an empty first component: refused below, never read as "x"
    parts = (head.split("/") if slash else []) + [last]
    registry = DEFAULT_REGISTRY
    if len(parts) > 1 and _is_registry(parts[0]):
        registry = parts.pop(0).lower()
        if not _REGISTRY.match(registry):
            raise ImageError(f"{reference!r} has a malformed registry {registry!r}")
    registry = _LEGACY_REGISTRIES.get(registry, registry)
    if registry == DEFAULT_REGISTRY and len(parts) == 1:
        parts.insert(0, "library")
    for comp in parts:
        if not _PATH_COMPONENT.match(comp):
            raise ImageError(
                f"{reference!r}: repository component {comp!r} must be lower-case letters, "
                "digits and separators"
            )
    if tag is None and not digest:
        tag = "latest"
    return ImageRef(registry, "/".join(parts), tag, digest or None)


@dataclass(frozen=True, slots=True, order=True)
class RegistryPrefix:
    """An approved location: a registry and optionally a repository path below it."""

    registry: str
    path: str = ""

    def __str__(self) -> str:
        return f"{self.registry}/{self.path}/" if self.path else f"{self.registry}/"

    def admits(self, image: ImageRef) -> bool:
        if image.registry != self.registry:
            return False
        if not self.path:
            return True
        return image.repository == self.path or image.repository.startswith(self.path + "/")


def parse_registry_prefix(text: str) -> RegistryPrefix:
    """``registry.example.com/agents/`` -> RegistryPrefix('registry.example.com', 'agents')."""
    raw = text.strip()
    if not raw or any(c.isspace() for c in raw) or "@" in raw or not raw.isascii():
        raise ImageError(f"{text!r} is not a registry prefix (expected host[:port][/path/])")
    parts = [p for p in raw.rstrip("/").split("/") if p] if raw.strip("/") else []
    if not parts:
        raise ImageError(f"{text!r} is not a registry prefix (expected host[:port][/path/])")
    if raw.startswith("/") or "//" in raw.rstrip("/"):
        raise ImageError(f"{text!r} has an empty path component")
    if _is_registry(parts[0]):
        registry = parts.pop(0).lower()
        if not _REGISTRY.match(registry):
            raise ImageError(f"{text!r} has a malformed registry {registry!r}")
    else:
        registry = DEFAULT_REGISTRY
    registry = _LEGACY_REGISTRIES.get(registry, registry)
    for comp in parts:
        if ":" in comp:
            raise ImageError(f"{text!r}: a registry prefix names a location, not a tag")
        if not _PATH_COMPONENT.match(comp):
            raise ImageError(f"{text!r}: path component {comp!r} is not a repository name")
    return RegistryPrefix(registry, "/".join(parts))


def image_admitted(reference: str, prefixes: tuple[RegistryPrefix, ...]) -> bool:
    """True when the normalised reference lies under one of the approved prefixes."""
    try:
        image = parse_image(reference)
    except ImageError:
        return False
    return any(p.admits(image) for p in prefixes)
