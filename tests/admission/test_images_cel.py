"""The registry rule compiled to CEL, run by the real engine, agrees with the reference
``corral.model.images.image_admitted`` on generated references, attacker-shaped ones included."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from corral.check.engine import Checker
from corral.model.images import image_admitted, parse_registry_prefix
from tests.admission.helpers import failing, make_policy, only, pod

pytestmark = pytest.mark.engine

PREFIX_SETS = [
    ["registry.example.com/agents/", "ghcr.io/corral-dev/"],
    ["registry.example.com"],
    ["openpolicyagent/", "library/nginx"],
    ["docker.io/"],
    ["library/"],
    ["localhost:5000/team/", "[::1]:5000/"],
    ["docker.io/localhost/", "docker.io/foo.bar/x/"],
]

REGISTRIES = st.sampled_from([
    "registry.example.com", "REGISTRY.Example.COM", "registry.example.com.evil.io",
    "registry.example.com:5000", "registry.example.co", "evil.io/registry.example.com",
    "registry.example.com@evil", "docker.io", "Docker.IO", "index.docker.io",
    "registry-1.docker.io", "localhost", "LOCALHOST", "localhost:5000", "ghcr.io", "GHCR.io",
    "ghcr.io.evil.io", "[::1]:5000", "[::1]", "foo.bar", "",
])
COMPONENTS = st.sampled_from([
    "agents", "agents-evil", "agentsx", "corral-dev", "corral-dev.evil", "openpolicyagent",
    "library", "nginx", "localhost", "foo.bar", "x", "team", "a__b", "a--b", "a_b", "A", "a..b",
    "", "Agents", "opa", "research",
]) | st.from_regex(r"[a-z0-9][a-z0-9._-]{0,6}", fullmatch=True)
SUFFIXES = st.sampled_from([
    "", ":latest", ":1.4", ":v1-rc.2", ":", ":a:b", ":-bad", ":" + "t" * 128, ":" + "t" * 129,
    "@sha256:" + "a" * 64, ":v1@sha256:" + "b" * 64, "@evil", "@sha256:abc", "@sha256:" + "A" * 64,
    "@sha512:" + "c" * 128, "@sha256:" + "a" * 64 + "@x", " ", "\n",
])


@st.composite
def references(draw: st.DrawFn) -> str:
    reg = draw(REGISTRIES)
    comps = draw(st.lists(COMPONENTS, min_size=1, max_size=4))
    ref = "/".join(([reg] if reg else []) + comps) + draw(SUFFIXES)
    return draw(st.sampled_from([ref, ref, ref.upper(), " " + ref]))


@pytest.fixture(scope="module",
                params=[(i, n) for i in range(len(PREFIX_SETS)) for n in (False, True)],
                ids=lambda p: f"set{p[0]}-{'native' if p[1] else 'cached'}-regex")
def case(request: pytest.FixtureRequest) -> tuple[Checker, tuple[object, ...]]:
    """Each prefix set, with the engine's own regex and with corral check's cached one."""
    index, native = request.param
    texts = PREFIX_SETS[index]
    prefixes = tuple(parse_registry_prefix(t) for t in texts)
    policy = make_policy(only("registries"), registries=texts)
    return Checker(policy, native_regex=native), prefixes


def cel_admits(checker: Checker, image: str) -> bool:
    spec = {"containers": [{"name": "c", "image": image}]}
    return "registries" not in failing(checker, pod(spec))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ref=references() | st.text(max_size=40))
@example(ref="/0")  # an empty first component was once read as docker.io/library/0
def test_cel_agrees_with_reference(case: tuple[Checker, tuple[object, ...]], ref: str) -> None:
    checker, prefixes = case
    assert cel_admits(checker, ref) == image_admitted(ref, prefixes)  # type: ignore[arg-type]


ATTACKS = [
    ("registry.example.com.evil.io/agents/x:1", False),
    ("registry.example.com@evil/agents/x:1", False),
    ("registry.example.com/agents-evil/x:1", False),
    ("registry.example.com/agents/../x:1", False),
    ("evil.io/registry.example.com/agents/x:1", False),
    ("REGISTRY.EXAMPLE.COM/agents/x:1", True),
    ("registry.example.com/agents/x:1@sha256:" + "a" * 64, True),
    ("registry.example.com:443/agents/x:1", False),
    ("registry.example.com/agents", True),
    ("ghcr.io/corral-dev", True),
    ("ghcr.io/corral-devx/y:1", False),
]


@pytest.mark.parametrize(("ref", "admitted"), ATTACKS)
def test_attacks(ref: str, admitted: bool) -> None:
    texts = PREFIX_SETS[0]
    prefixes = tuple(parse_registry_prefix(t) for t in texts)
    assert image_admitted(ref, prefixes) is admitted
    assert cel_admits(Checker(make_policy(only("registries"), registries=texts)), ref) is admitted
