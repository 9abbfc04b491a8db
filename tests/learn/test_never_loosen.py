"""Never loosen under suspicion: no allow suggestion that would apply without --include-risky
adds a destination carrying a flag, belongs to an agent with other signals in the window, or
names a loopback/private/single-label host or an IP literal."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.learn import apply
from corral.learn.report import Anomaly, Charts, DeniedDestination, Readiness, Report, Verdict
from corral.learn.risk import Flag, flags_for, not_an_allow_entry
from corral.learn.suggest import agent_signals, suggestions
from corral.model.load import parse_policy
from tests.learn import scenario

POLICY = parse_policy(scenario.POLICY, "corral.yaml")[0]
AGENTS = ("research", "analyst", "coder", "scraper")
HOSTS = ("api.anthropic.com", "pastebin.com", "localhost", "intranet", "db.internal",
         "printer.local", "203.0.113.9", "2001:db8::1", "hooks.slack.com", "api.mistral.ai",
         "huggingface.co", "x7k2m9q4w8e1r5t3y6u0.cdn-sync.xyz", "bucket.s3.amazonaws.com",
         "reports.example-corp.com", "app.localhost")
NOT_IN_ALLOWLIST = Verdict("deny", "not_in_allowlist", None)


def _denied(agent: str, host: str, flagged: bool) -> DeniedDestination:
    flags = tuple(flags_for(host))
    if flagged:
        flags += (Flag("beacon", "regular requests every 30 min"),)
    return DeniedDestination(agent, host, 443, 5, 0, "2026-11-25T10:00:00.000Z", True, flags,
                             NOT_IN_ALLOWLIST)


def _report(denied: list[DeniedDestination], anomalies: list[Anomaly],
            blocked: tuple[DeniedDestination, ...] = ()) -> Report:
    ready = tuple(Readiness(a, True, "quiet", None, 40, 0, tuple(d for d in blocked
                                                                 if d.agent == a))
                  for a in ("coder", "scraper"))  # the learn-mode agents of the policy
    return Report("2026-11-26T12:00:00+00:00", "2026-11-19T12:00:00+00:00", "corral.yaml",
                  (), tuple(denied), (), (), tuple(anomalies), (), ready, Charts())


_denials = st.lists(st.builds(_denied, st.sampled_from(AGENTS), st.sampled_from(HOSTS),
                              st.booleans()), max_size=12)
_anomalies = st.lists(st.builds(
    lambda a: Anomaly(a, "api.openai.com", 443, "2026-11-24", 50 << 20, 1e6, 1e5, 20),
    st.sampled_from(AGENTS)), max_size=2)


@settings(max_examples=200, deadline=None)
@given(denied=_denials, anomalies=_anomalies, blocked=_denials)
def test_no_suggestion_loosens_for_a_flagged_destination_or_agent(
        denied: list[DeniedDestination], anomalies: list[Anomaly],
        blocked: list[DeniedDestination]) -> None:
    """Denied in the window or kept by the enforce switch, the same rules hold."""
    report = _report(denied, anomalies, tuple(blocked))
    chosen = suggestions(report, POLICY)
    signals = agent_signals(report)
    kept = [d for r in report.readiness for d in r.would_block]
    flagged = {(d.agent, d.host) for d in (*denied, *kept) if d.flags}
    for s in chosen:
        if s.kind != "add-allow":
            continue
        assert not_an_allow_entry(s.value) is None
        if (s.agent, s.value) in flagged or s.agent in signals:
            assert s.risky, s
    edit = apply.apply_suggestions(scenario.POLICY, chosen)
    assert all(not s.risky for s in edit.applied)
    added = {(s.agent, s.value) for s in edit.applied if s.kind == "add-allow"}
    assert not added & flagged
    assert not {a for a, _ in added} & set(signals)


def test_local_names_and_addresses_are_never_suggested() -> None:
    report = _report([_denied("analyst", h, False) for h in
                      ("localhost", "app.localhost", "intranet", "db.internal", "printer.local",
                       "203.0.113.9", "api.anthropic.com")], [])
    assert [s.value for s in suggestions(report, POLICY) if s.kind == "add-allow"] == [
        "api.anthropic.com"]


def test_a_benign_name_of_an_agent_with_signals_is_held_back() -> None:
    report = _report([_denied("research", "api.anthropic.com", False),
                      _denied("research", "pastebin.com", False),
                      _denied("analyst", "api.mistral.ai", False)], [])
    by_value = {s.value: s for s in suggestions(report, POLICY)}
    assert by_value["api.anthropic.com"].risky
    assert "correlated signals" in by_value["api.anthropic.com"].reason
    assert "pastebin.com" in by_value["api.anthropic.com"].reason
    assert not by_value["api.mistral.ai"].risky
