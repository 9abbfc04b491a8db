"""decide(): deny by default, deny beats allow, ports, learn mode, IP literals; a reason always."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.decide import reasons
from corral.decide.egress import AgentRules, EgressRequest, decide
from corral.model.policy import Agent


def rules(mode: str = "enforce", **egress: object) -> AgentRules:
    spec = {"mode": mode, "allow": ["api.openai.com", "*.weather.gov", "git.corp:8443"],
            "deny": ["bad.weather.gov", "*.pastebin.com"], **egress}
    return AgentRules.from_agent(Agent.model_validate(
        {"name": "a", "selector": {"app": "a"}, "egress": spec}))


def req(host: str, port: int = 443, kind: str = "connect") -> EgressRequest:
    return EgressRequest(kind, host, port)  # type: ignore[arg-type]


@pytest.mark.parametrize(("host", "port", "kind", "outcome", "reason"), [
    ("api.openai.com", 443, "connect", "allow", reasons.ALLOWED_BY_RULE),
    ("API.OpenAI.com.", 443, "connect", "allow", reasons.ALLOWED_BY_RULE),
    ("api.openai.com", 80, "http", "allow", reasons.ALLOWED_BY_RULE),
    ("api.openai.com", 8443, "connect", "deny", reasons.PORT_NOT_ALLOWED),
    ("forecast.weather.gov", 443, "connect", "allow", reasons.ALLOWED_BY_RULE),
    ("weather.gov", 443, "connect", "deny", reasons.NOT_IN_ALLOWLIST),
    ("bad.weather.gov", 443, "connect", "deny", reasons.DENIED_BY_RULE),
    ("git.corp", 8443, "connect", "allow", reasons.ALLOWED_BY_RULE),
    ("git.corp", 443, "connect", "deny", reasons.PORT_NOT_ALLOWED),
    ("evil.com", 443, "connect", "deny", reasons.NOT_IN_ALLOWLIST),
    ("api.openai.com.evil.io", 443, "connect", "deny", reasons.NOT_IN_ALLOWLIST),
    ("bad_name!", 443, "connect", "deny", reasons.INVALID_HOST),
    ("2130706433", 80, "http", "deny", reasons.FORBIDDEN_ADDRESS),
    ("0x7f.1", 80, "http", "deny", reasons.FORBIDDEN_ADDRESS),
    ("[::ffff:a9fe:a9fe]", 80, "http", "deny", reasons.FORBIDDEN_ADDRESS),
    ("8.8.8.8", 443, "connect", "deny", reasons.IP_LITERAL),
])
def test_enforce(host: str, port: int, kind: str, outcome: str, reason: str) -> None:
    d = decide(rules(), req(host, port, kind))
    assert (d.outcome, d.reason) == (outcome, reason)


def test_learn_mode_allows_policy_denials_but_never_guards_or_denylist() -> None:
    r = rules("learn")
    assert decide(r, req("evil.com")).outcome == "would_deny"
    assert decide(r, req("8.8.8.8")).outcome == "would_deny"
    assert decide(r, req("bad.weather.gov")).outcome == "deny"
    assert decide(r, req("169.254.169.254", 80, "http")).outcome == "deny"
    assert decide(r, req("x.pastebin.com")).outcome == "deny"


@pytest.mark.parametrize("field", ["resolve_into", "allow_cidrs"])
def test_a_resolve_range_never_grants_an_ip_literal(field: str) -> None:
    """The Kubernetes API Service (10.96.0.1) under ``resolve_into: [10.96.0.0/12]``: names may
    resolve there, but CONNECT 10.96.0.1:443 is refused, in learn mode too (issue 10, item 2)."""
    for mode in ("enforce", "learn"):
        d = decide(rules(mode, **{field: ["10.96.0.0/12"]}), req("10.96.0.1", 443))
        assert (d.outcome, d.reason, d.rule) == ("deny", reasons.FORBIDDEN_ADDRESS,
                                                 "ssrf:private")


@pytest.mark.parametrize(("entry", "host", "port", "expected"), [
    ("10.96.0.1:443", "10.96.0.1", 443, ("allow", reasons.ALLOWED_CIDR, "10.96.0.1:443")),
    ("10.96.0.1:443", "[::ffff:10.96.0.1]", 443, ("allow", reasons.ALLOWED_CIDR, "10.96.0.1:443")),
    ("10.96.0.1:443", "10.96.0.1", 80, ("deny", reasons.FORBIDDEN_ADDRESS, "ssrf:private")),
    ("10.96.0.1:443", "10.96.0.2", 443, ("deny", reasons.FORBIDDEN_ADDRESS, "ssrf:private")),
    ("10.0.0.0/8:5432", "10.1.2.3", 5432, ("allow", reasons.ALLOWED_CIDR, "10.0.0.0/8:5432")),
    ("[fd00::/8]:443", "[fd00::7]", 443, ("allow", reasons.ALLOWED_CIDR, "[fd00::/8]:443")),
    ("8.8.8.8:853", "8.8.8.8", 853, ("allow", reasons.ALLOWED_CIDR, "8.8.8.8:853")),
    ("8.8.8.8:853", "8.8.8.8", 443, ("deny", reasons.PORT_NOT_ALLOWED, "8.8.8.8:853")),
])
def test_an_address_entry_grants_that_address_on_its_port(
        entry: str, host: str, port: int, expected: tuple[str, str, str]) -> None:
    d = decide(rules(allow=[entry]), req(host, port))
    assert (d.outcome, d.reason, d.rule) == expected


@pytest.mark.parametrize("entry", ["10.96.0.1", "10.96.0.0/12", "fd00::1", "[fd00::1]",
                                   "10.96.0.1/12:443", "0177.0.0.1:443", "10.0.0.1:0"])
def test_an_address_entry_needs_a_canonical_address_and_its_port(entry: str) -> None:
    from corral.model.errors import PolicyError
    from corral.model.load import parse_policy

    text = f"""apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {{name: t}}
spec:
  namespace: ns
  agents: [{{name: a, selector: {{app: a}}, egress: {{allow: ["{entry}"]}}}}]
"""
    with pytest.raises(PolicyError) as exc:
        parse_policy(text)
    assert exc.value.problems[0].path == "spec.agents[0].egress.allow[0]"


def test_the_old_allow_cidrs_name_warns_with_the_entry_and_the_fix() -> None:
    from corral.model.load import parse_policy

    text = """apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {name: t}
spec:
  namespace: ns
  agents: [{name: a, selector: {app: a}, egress: {allow_cidrs: [10.96.0.0/12]}}]
"""
    _policy, warnings = parse_policy(text)
    found = [w for w in warnings if w.path == "spec.agents[0].egress.allow_cidrs[0]"]
    assert len(found) == 1
    assert "resolve_into" in found[0].message and "'10.96.0.0/12:443'" in found[0].message


def test_quarantine_beats_everything() -> None:
    r = AgentRules.from_agent(Agent.model_validate(
        {"name": "a", "selector": {"app": "a"}, "egress": {"allow": ["api.openai.com"]}}),
        quarantined=True)
    assert decide(r, req("api.openai.com")).reason == reasons.QUARANTINED


@given(st.text(max_size=40), st.integers(1, 65535), st.sampled_from(["connect", "http"]),
       st.sampled_from(["enforce", "learn"]))
def test_total_and_always_explained(host: str, port: int, kind: str, mode: str) -> None:
    d = decide(rules(mode), req(host, port, kind))
    assert d.reason in vars(reasons).values()
    assert d.outcome in ("allow", "deny", "would_deny")
    if d.outcome != "allow":
        assert d.reason in reasons.NEXT_STEP
