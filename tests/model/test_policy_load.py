"""Loading corral.yaml: every error names file, path, line and expectation; all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.cli import main
from corral.model.errors import PolicyError
from corral.model.load import load_policy_checked, parse_policy

EXAMPLE = Path(__file__).parents[2] / "examples" / "corral.yaml"

THREE_MISTAKES = """\
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {name: prod}
spec:
  namespace: ai-workloads
  registries: [registry.example.com/agents/]
  agents:
    - name: research
      selector: {app: ai-agent}
      egress:
        mode: enforce
        allow: [api.openai.com]
    - name: coder
      selector: {app: coder}
      egress:
        mode: enforced
        allow: [pypi.org, files.pythonhosted.org, "*.github.com", "*.com"]
        quota: {bytes_out_per_hour: lots}
"""


def test_example_loads() -> None:
    policy, warnings = load_policy_checked(EXAMPLE)
    assert [a.name for a in policy.spec.agents] == ["research", "coder"]
    assert {a.egress.mode for a in policy.spec.agents} == {"enforce", "learn"}
    assert all(w.severity == "warning" for w in warnings)


def test_three_mistakes_three_errors_with_paths_and_lines() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(THREE_MISTAKES, "bad.yaml")
    got = {(p.path, p.line) for p in info.value.problems}
    assert got == {
        ("spec.agents[1].egress.mode", 16),
        ("spec.agents[1].egress.allow[3]", 17),
        ("spec.agents[1].egress.quota.bytes_out_per_hour", 18),
    }
    text = str(info.value)
    assert "bad.yaml:16" in text and "'enforce' or 'learn'" in text
    assert "public suffix" in text and "50Mi" in text


def test_unknown_field_lists_what_is_expected() -> None:
    text = THREE_MISTAKES.replace("mode: enforce\n", "mode: enforce\n        alow: [x.com]\n", 1)
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "typo.yaml")
    typo = [p for p in info.value.problems if p.path == "spec.agents[0].egress.alow"]
    assert typo and "allow" in typo[0].message and "unknown field" in typo[0].message


@pytest.mark.parametrize(("text", "needle"), [
    ("a: [", "not valid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("apiVersion: corral.dev/v1alpha1\napiVersion: x\n", "not valid YAML"),
])
def test_document_level_errors(text: str, needle: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "x.yaml")
    assert needle in str(info.value)


def test_duplicate_agent_ports_are_refused() -> None:
    text = THREE_MISTAKES.replace("mode: enforced", "mode: enforce").replace(
        ', "*.com"]', "]").replace("lots", "1Mi").replace(
        "selector: {app: coder}", "selector: {app: coder}\n      port: 8080")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "x.yaml")
    assert "identity" in str(info.value)


def test_lint_warns_on_exfiltration_channels() -> None:
    text = THREE_MISTAKES.replace("mode: enforced", "mode: enforce").replace(
        ', "*.com"]', ', x-y.trycloudflare.com, dns.google, "*.amazonaws.com"]').replace(
        "lots", "1Mi")
    _, warnings = parse_policy(text, "x.yaml")
    msgs = " ".join(w.message for w in warnings)
    assert "tunnel" in msgs and "DNS-over-HTTPS" in msgs and "s3.amazonaws.com" in msgs


def test_invalid_policy_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(THREE_MISTAKES)
    out = tmp_path / "out"
    assert main(["render", "-f", str(bad), "-o", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert err.count("error:") >= 3 and "nothing was written" in err


TWO_AGENTS = """\
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {name: p}
spec:
  namespace: ns
  agents:
    - {name: a, selector: {app: a}, egress: {mode: enforce}}
    - {name: b, selector: {app: b}, egress: {mode: enforce}}
"""


def test_duplicate_agent_names_get_the_names_message() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(TWO_AGENTS.replace("name: b", "name: a"), "x.yaml")
    assert [p.message for p in info.value.problems] == [
        "agent name 'a' is used twice; names must be unique"]


def test_every_agent_wrong_gives_only_their_errors() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(TWO_AGENTS.replace("mode: enforce", "mode: bad"), "x.yaml")
    assert [(p.path, p.line) for p in info.value.problems] == [
        ("spec.agents[0].egress.mode", 7), ("spec.agents[1].egress.mode", 8)]


def test_empty_agent_list_still_says_so() -> None:
    text = TWO_AGENTS.split("  agents:", maxsplit=1)[0] + "  agents: []\n"
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "x.yaml")
    assert [p.path for p in info.value.problems] == ["spec.agents"]


@pytest.mark.parametrize(("value", "kind"), [
    ("08", "a number"), ("0E0", "a number"), ("1e3", "a number"), ("true", "a boolean"),
    ("null", "null"),
])
def test_unquoted_label_value_read_as_non_text_says_to_quote_it(value: str, kind: str) -> None:
    """YAML 1.2 reads 08 as the number 8: the user meant the text, so the error says to quote."""
    with pytest.raises(PolicyError) as info:
        parse_policy(TWO_AGENTS.replace("{app: b}", f"{{app: {value}}}"), "x.yaml")
    (problem,) = info.value.problems
    assert problem.path == "spec.agents[1].selector" and problem.line == 8
    assert kind in problem.message and "quote it" in problem.message


def test_quoted_label_values_load_as_written() -> None:
    policy, _ = parse_policy(TWO_AGENTS.replace("{app: b}", '{app: "08", v: "0E0"}'), "x.yaml")
    assert policy.spec.agents[1].selector == {"app": "08", "v": "0E0"}
