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


def test_allowed_cidr_admits_private_literal() -> None:
    r = rules(allow_cidrs=["10.96.0.0/12"])
    d = decide(r, req("10.96.0.1", 443))
    assert (d.outcome, d.reason, d.rule) == ("allow", reasons.ALLOWED_CIDR, "10.96.0.0/12")


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
