"""Domain pattern semantics (DESIGN.md): exact names, wildcards below but never the apex,
public-suffix wildcards refused, normalisation never changes a verdict."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.model.domains import (
    DomainError,
    PatternSet,
    looks_like_ip,
    normalise_host,
    parse_ip_literal,
    parse_pattern,
)

label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z")
name = st.lists(label, min_size=1, max_size=4).map(".".join)


def matches(pattern: str, host: str) -> bool:
    p = parse_pattern(pattern)
    try:
        h = normalise_host(host)
    except DomainError:
        return False
    return p.matches_name(h)


@given(name)
def test_wildcard_never_matches_apex_lookalikes_or_suffix_extensions(base: str) -> None:
    domain = f"{base}.example.com"
    pat = f"*.{domain}"
    assert not matches(pat, domain)
    assert not matches(pat, f"evil{domain}")
    assert not matches(pat, f"{domain}.evil.io")
    assert matches(pat, f"a.{domain}")
    assert matches(pat, f"a.b.c.{domain}")


def test_wildcard_example_com() -> None:
    for bad in ("example.com", "evilexample.com", "example.com.evil.io", "xexample.com"):
        assert not matches("*.example.com", bad)
    assert matches("*.example.com", "api.example.com")
    assert matches("*.example.com", "deep.api.example.com")


@given(name, st.sampled_from(["", "."]), st.booleans())
def test_case_and_trailing_dot_never_change_a_verdict(host: str, dot: str, upper: bool) -> None:
    spelled = (host.upper() if upper else host) + dot
    for pattern in ("example.com", "*.example.com", host, f"*.{host}.example.com"):
        try:
            p = parse_pattern(pattern)
        except DomainError:
            continue
        assert p.matches_name(normalise_host(spelled)) == p.matches_name(normalise_host(host))


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüßéñçøå", min_size=1, max_size=12))
def test_idn_names_match_their_punycode_form(word: str) -> None:
    host = f"{word}.example.com"
    try:
        ace = normalise_host(host)
    except DomainError:
        return
    assert parse_pattern(host).matches_name(ace)
    assert parse_pattern(ace).matches_name(normalise_host(host))


def test_idn_lookalike_does_not_match_ascii_original() -> None:
    cyrillic_a = "\u0430"
    spoof = f"{cyrillic_a}pi.example.com"
    assert normalise_host(spoof).startswith("xn--")
    assert not matches("api.example.com", spoof)
    assert matches("*.example.com", spoof)  # still below the domain: wildcard semantics hold


@pytest.mark.parametrize("bad", ["*", "*.com", "*.co.uk", "*.github.io", "**", "*:443"])
def test_refuses_everything_and_public_suffix_wildcards(bad: str) -> None:
    with pytest.raises(DomainError):
        parse_pattern(bad)


def test_deny_lists_may_name_public_suffix_wildcards() -> None:
    assert parse_pattern("*.ngrok.io", for_deny=True).wildcard
    with pytest.raises(DomainError):
        parse_pattern("*.ngrok.io")


@pytest.mark.parametrize("bad", ["a*.example.com", "*.*.example.com", "http://x.com/",
                                 "user@x.com", "10.0.0.1", "2130706433", "[::1]", "x..com",
                                 "-x.com", "host:0", "host:99999", "host:abc"])
def test_rejects_non_patterns(bad: str) -> None:
    with pytest.raises(DomainError):
        parse_pattern(bad)


def test_ports_parse_and_render() -> None:
    p = parse_pattern("Git.Corp.Example:8443")
    assert (p.name, p.port, str(p)) == ("git.corp.example", 8443, "git.corp.example:8443")


@pytest.mark.parametrize(("spelling", "addr"), [
    ("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("[::ffff:7f00:1]", "::ffff:7f00:1"),
    ("169.254.169.254.", "169.254.169.254"), ("0251.0376.0251.0376", "169.254.169.254"),
])
def test_ip_literal_spellings(spelling: str, addr: str) -> None:
    assert looks_like_ip(spelling)
    assert str(parse_ip_literal(spelling)) == addr


def test_numeric_last_label_is_treated_as_ip() -> None:
    assert looks_like_ip("foo.123")
    assert not looks_like_ip("example.com")


def test_pattern_set_returns_exact_and_every_enclosing_wildcard() -> None:
    ps = PatternSet([parse_pattern(x) for x in ("a.b.com", "*.b.com", "*.com.b.com")])
    assert [str(p) for p in ps.candidates("a.b.com")] == ["a.b.com", "*.b.com"]
    assert ps.candidates("b.com") == []
