"""Image-reference rules as regexes, shared by the CEL, Rego and Kyverno compilers. Pure.

Admission engines have no image parser, and the CEL engines (Kubernetes' and the one
``corral check`` runs) have no string splitting, so normalisation happens here, at compile time:
each approved ``RegistryPrefix`` becomes a few anchored RE2 expressions that match exactly the raw
references ``corral.model.images.image_admitted`` admits under that prefix (``nginx`` is
``docker.io/library/nginx``, the registry is case-insensitive and may carry a port, a digest may
follow, repository paths match on ``/`` boundaries). Property tests hold the expressions to the
reference function. The dialect is the common subset of RE2 (Kubernetes, OPA) and Rust's regex
crate (the Python CEL engine): no look-around, no back-references, ASCII classes only.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.model.images import DEFAULT_REGISTRY, RegistryPrefix

COMP = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_COMP_NO_DOT = r"[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"  # length bound: LONG_TAG (counted repeats are slow)
DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
# The digest is checked apart (DIGEST_OK, only for references with '@'): every regex here is
# compiled again on each call by the CEL engine, and short ones compile several times faster.
SUFFIX = rf"(?::{TAG})?(?:@.+)?"
DIGEST_OK = rf"^[^@]*@{DIGEST}$"
UPPER_REGISTRY = r"^[^/]*[A-Z]"  # a registry spelled with capitals: only then the slow path
_DOCKER_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")
_META = set(".[](){}*+?^$|\\")


def literal(text: str) -> str:
    """``text`` as a regex matching itself (only metacharacters escaped: portable to RE2/Rust)."""
    return "".join("\\" + ch if ch in _META else ch for ch in text)


def _any_case(name: str) -> str:
    # The reference lower-cases the registry component; ASCII letters only (see module doc).
    if name == "localhost":  # 'LOCALHOST' is not a registry to the reference: exact only
        return name
    return "".join(f"[{ch}{ch.upper()}]" if ch.isalpha() else literal(ch) for ch in name)


@dataclass(frozen=True, slots=True)
class ImageRule:
    """References one prefix admits: ``include`` matches and ``exclude`` (if any) does not.

    When ``lead`` is set, a reference whose registry is written in lower case matches
    ``include`` iff it starts with ``lead`` and matches the shorter ``lower``; one with capitals
    in its registry component also matches ``UPPER_REGISTRY``. Compilers use that as a fast path.
    """

    include: str
    exclude: str | None = None
    lead: str | None = None
    lower: str | None = None


def _docker_hub(path: str) -> list[ImageRule]:
    hub = "(?:" + "|".join(_any_case(n) for n in _DOCKER_HUB_NAMES) + ")"
    if not path:
        return [
            ImageRule(rf"^(?:{hub}/{COMP}(?:/{COMP})*|{COMP}){SUFFIX}$"),
            ImageRule(rf"^{_COMP_NO_DOT}(?:/{COMP})+{SUFFIX}$", exclude="^localhost/"),
        ]
    parts = path.split("/")
    more = "*" if len(parts) > 1 else "+"  # a one-component rest means library/<it>
    rules = [rf"{hub}/{literal(path)}(?:/{COMP}){more}"]
    if "." not in parts[0] and parts[0] != "localhost":  # would read as a registry if implicit
        rules.append(rf"{literal(path)}(?:/{COMP}){more}")
    if parts[0] == "library" and len(parts) == 1:
        rules.append(rf"(?:{hub}/)?{COMP}")
    elif parts[0] == "library" and len(parts) == 2:
        rules.append(rf"(?:{hub}/)?{literal(parts[1])}")
    return [ImageRule(rf"^(?:{'|'.join(rules)}){SUFFIX}$")]


def prefix_rules(prefix: RegistryPrefix) -> list[ImageRule]:
    """Rules equivalent to ``prefix.admits(parse_image(ref))`` on raw references (together with
    ``DIGEST_OK`` for references that carry ``@``, and the ``LONG_TAG`` bound)."""
    if prefix.registry == DEFAULT_REGISTRY:
        return _docker_hub(prefix.path)
    repo = literal(prefix.path) if prefix.path else COMP
    rest = rf"/{repo}(?:/{COMP})*{SUFFIX}$"
    lead = f"{prefix.registry}/{prefix.path}"
    return [ImageRule(rf"^{_any_case(prefix.registry)}{rest}", lead=lead,
                      lower=rf"^{literal(prefix.registry)}{rest}")]


def registry_rules(prefixes: tuple[RegistryPrefix, ...]) -> list[ImageRule]:
    return [r for p in prefixes for r in prefix_rules(p)]


# A tag longer than 128 characters (the reference refuses it). Evaluated only for references
# longer than LONG_TAG_MIN, so the usual reference never pays for this regex's 129 repeats.
LONG_TAG = r"^[^@]*:[A-Za-z0-9_.-]{129}[^/@]*(?:@.*)?$"
LONG_TAG_MIN = 130

UNTAGGED = r"^(?:[^@]*/)?[^/@:]*$"  # no tag and no digest: the runtime pulls :latest
PINNED = rf"^[^@]+@{DIGEST}$"
