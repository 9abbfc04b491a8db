"""Image references: normalise first, then match approved prefixes on '/' boundaries."""

from __future__ import annotations

import pytest

from corral.model.images import ImageError, image_admitted, parse_image, parse_registry_prefix


@pytest.mark.parametrize(("ref", "norm"), [
    ("nginx", "docker.io/library/nginx:latest"),
    ("nginx:1.27", "docker.io/library/nginx:1.27"),
    ("bitnami/redis", "docker.io/bitnami/redis:latest"),
    ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1"),
    ("localhost/x", "localhost/x:latest"),
    ("registry.example.com:5000/agents/a:1", "registry.example.com:5000/agents/a:1"),
    ("Registry.Example.com/agents/a@sha256:" + "a" * 64,
     "registry.example.com/agents/a@sha256:" + "a" * 64),
    ("r.io/a:1@sha256:" + "b" * 64, "r.io/a:1@sha256:" + "b" * 64),
])
def test_normalise(ref: str, norm: str) -> None:
    assert str(parse_image(ref)) == norm


@pytest.mark.parametrize("bad", ["", " nginx", "UPPER/x", "r.io/a:", "r.io/a@sha256:xyz",
                                 "r.io//a", "r.io/a b", "registry.example.\u212aom/agents/x:1",
                                 "r.io/a:t\u00e4g", "/0", "/nginx:1", "/r.io/x"])
def test_rejects_malformed(bad: str) -> None:
    with pytest.raises(ImageError):
        parse_image(bad)


PREFIXES = (parse_registry_prefix("registry.example.com/agents/"),
            parse_registry_prefix("ghcr.io/corral-dev"))


@pytest.mark.parametrize(("ref", "ok"), [
    ("registry.example.com/agents/research:1.4", True),
    ("registry.example.com/agents/team/x@sha256:" + "c" * 64, True),
    ("registry.example.com/agents", True),  # the location itself, as Docker names it
    ("registry.example.com/agents-evil/x:1", False),
    ("registry.example.com.evil.io/agents/x:1", False),
    ("registry.example.com:443/agents/x:1", False),
    ("evil.io/registry.example.com/agents/x:1", False),
    ("ghcr.io/corral-dev/corral:0.1.0", True),
    ("ghcr.io/corral-dev-evil/corral:0.1.0", False),
    ("nginx", False),
    ("docker.io/nginx", False),
])
def test_prefix_boundaries(ref: str, ok: bool) -> None:
    assert image_admitted(ref, PREFIXES) is ok


def test_bare_registry_prefix_admits_everything_below() -> None:
    p = (parse_registry_prefix("registry.example.com"),)
    assert image_admitted("registry.example.com/a/b:1", p)
    assert not image_admitted("registry.example.com.evil.io/a:1", p)


@pytest.mark.parametrize("bad", ["", "/", "r.io/a:tag", "r.io//a", "r.io/a@sha256:x"])
def test_rejects_bad_prefixes(bad: str) -> None:
    with pytest.raises(ImageError):
        parse_registry_prefix(bad)
