"""corral's Falco rules in a real engine: every condition (lists, macros and exceptions expanded)
compiles in Debian's sysdig, every output format is accepted, and replaying the recorded
captures in ``corpora/falco/traces`` fires the rules that should fire and no others.

sysdig 0.29 predates some fields current Falco has. Nothing is substituted silently: the fields
it lacks are listed in ``SYSDIG_LACKS`` (a test proves the list is exact), they are isolated in
the macros listed in ``HELD_OUT``, and the rules that use them are named in
``ONLY_FIELDS_CHECKED``. For those rules the test proves sysdig refuses the full condition for
exactly that field, then compiles the rest with the held-out macro replaced by a tautology; the
held-out field itself is checked against Falco's supported-fields reference (test_compile.py).

The captures carry no Kubernetes metadata (no pod labels, no namespace), so replays scope the
rules explicitly with the overrides below, and every replay also runs the unrelaxed rules to
show that they do not fire outside their scope.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.compile.falco_expand import condition_fields, output_fields
from corral.model.policy import Policy
from tests.falco.engine import (
    TRACES,
    compiles,
    expanded,
    formats,
    matching_events,
    needs_corpora,
    needs_sysdig,
    policy,
)
from tests.falco.test_compile import policies

pytestmark = [pytest.mark.engine, needs_sysdig, needs_corpora]

SYSDIG_LACKS = {
    # field -> why: sysdig 0.29's libsinsp predates it (current Falco documents it)
    "proc.is_exe_upper_layer": "overlayfs upper-layer detection, added to libsinsp after 0.29",
}
HELD_OUT = {"corral_exe_upper_layer": "proc.is_exe_upper_layer"}
ONLY_FIELDS_CHECKED = {"binary dropped and executed"}
TAUTOLOGY = "evt.num >= 0"

# Explicit, minimal scope relaxations for captures without Kubernetes metadata:
IN_ANY_CONTAINER = {"corral_scope_research": "container.id != host"}  # drops ns + pod labels
ANYWHERE = {"corral_scope_research": TAUTOLOGY}  # host-captured traces: drops the container test
LOOPBACK_LEAVES_POD = {"corral_loopback_destination": "evt.num < 0"}  # never true

TRACE_NAMES = sorted(p.name for p in TRACES.glob("*.scap"))


def kind_of(rule_name: str) -> str:
    return rule_name.removeprefix("corral ").rsplit(" [", 1)[0]


def fired(p: Policy, overrides: dict[str, str] | None, trace: str) -> dict[str, list[str]]:
    """Rule kind -> matching events, for the research agent's sysdig-checkable rules."""
    out: dict[str, list[str]] = {}
    for name, rule in expanded(p, overrides).rules.items():
        if name.endswith("[research]") and kind_of(name) not in ONLY_FIELDS_CHECKED:
            events = matching_events(TRACES / trace, rule.condition)
            if events:
                out[kind_of(name)] = events
    return out


# --- the engine itself ---------------------------------------------------------------------

def test_sysdig_refuses_unknown_fields_bad_syntax_and_unknown_output_fields() -> None:
    assert compiles("proc.name = bash and fd.sport in (80, 443)").code == 0
    bad_field = compiles("proc.name = bash and proc.nosuch = 1")
    assert bad_field.code != 0 and "unrecognized field proc.nosuch" in bad_field.err
    assert compiles("proc.name = bash and (fd.sport = 80").code != 0
    assert compiles("proc.name === bash").code != 0
    assert formats("%proc.name %fd.name").code == 0
    assert formats("%proc.name %proc.nosuch").code != 0


def test_sysdig_lacks_exactly_the_listed_fields() -> None:
    used: set[str] = set()
    for p in policies():
        for rule in expanded(p).rules.values():
            used |= condition_fields(rule.condition) | output_fields(rule.output)
    lacking = {f for f in sorted(used) if compiles(f"{f} exists").code != 0}
    assert lacking == set(SYSDIG_LACKS)


def test_bracketed_pod_label_is_refused_by_sysdig_so_rules_use_the_dotted_form() -> None:
    assert compiles("k8s.pod.label[app] = x").code != 0
    assert compiles("k8s.pod.label.app.kubernetes.io/name = x").code == 0


# --- every condition and output ------------------------------------------------------------

@pytest.mark.parametrize("index", range(4))
def test_every_condition_compiles_in_sysdig(index: int) -> None:
    p = policies()[index]
    full = expanded(p)
    held = expanded(p, dict.fromkeys(HELD_OUT, TAUTOLOGY))
    for name, rule in full.rules.items():
        lacking = condition_fields(rule.condition) & set(SYSDIG_LACKS)
        if not lacking:
            run = compiles(rule.condition)
            assert run.code == 0, f"{name}: {run.err or run.out}\n{rule.condition}"
            continue
        assert kind_of(name) in ONLY_FIELDS_CHECKED, f"{name} uses {lacking}: not declared"
        refused = compiles(rule.condition)
        assert refused.code != 0 and any(f in refused.err for f in lacking), refused.err
        rest = held.rules[name].condition
        assert not condition_fields(rest) & set(SYSDIG_LACKS)
        run = compiles(rest)
        assert run.code == 0, f"{name} (held out {sorted(HELD_OUT)}): {run.err}\n{rest}"


@pytest.mark.parametrize("index", range(4))
def test_every_output_formats_in_sysdig(index: int) -> None:
    for name, rule in expanded(policies()[index]).rules.items():
        run = formats(rule.output)
        assert run.code == 0, f"{name}: {run.err or run.out}"


# --- replays -------------------------------------------------------------------------------

@pytest.mark.parametrize("trace", TRACE_NAMES)
def test_scoped_rules_fire_on_no_capture_without_the_agents_pod(trace: str) -> None:
    assert fired(policy(), None, trace) == {}


@pytest.mark.parametrize("trace", TRACE_NAMES)
def test_in_a_container_bash_running_ls_is_a_shell_and_an_unexpected_process(trace: str) -> None:
    expected = ({"unexpected process", "shell"} if trace == "psp_run_as_user_0_container.scap"
                else set())
    got = fired(policy(), IN_ANY_CONTAINER, trace)
    assert set(got) == expected, got
    if expected:
        assert all(" ls bash " in e for e in got["unexpected process"]), got
        assert all(" ls bash " in e for e in got["shell"]), got


def test_allowlisting_bash_and_ls_silences_both_rules() -> None:
    p = policy(agent={"processes": ["python3", "bash", "ls"]})
    assert fired(p, IN_ANY_CONTAINER, "psp_run_as_user_0_container.scap") == {}


def test_policy_exception_silences_only_its_rule() -> None:
    p = policy(runtime={"exceptions": [{"name": "debug_ls", "rule": "unexpected_process",
                                        "when": {"proc.name": "ls", "proc.pname": "bash"}}]})
    got = fired(p, IN_ANY_CONTAINER, "psp_run_as_user_0_container.scap")
    assert set(got) == {"shell"}


@pytest.mark.parametrize("trace", TRACE_NAMES)
def test_host_captures_with_the_container_test_dropped(trace: str) -> None:
    expected = {
        "cat_write.scap": {"unexpected process", "shell"},  # cat started by bash
        "psp_run_as_user_0_container.scap": {"unexpected process", "shell"},
    }.get(trace, set())
    assert set(fired(policy(), ANYWHERE, trace)) == expected


LOOPBACK_WORLD = {  # the captures' only connection is to 127.0.0.1:80; /tmp files are read
    "kube_api_addresses": ["127.0.0.1"], "kube_api_ports": [80],
    "metadata_addresses": ["127.0.0.1"], "miner_ports": [80], "token_paths": ["/tmp"],
}


@pytest.mark.parametrize("trace", TRACE_NAMES)
def test_network_and_token_rules_fire_on_matching_captures(trace: str) -> None:
    expected = {
        "connect_localhost.scap": {"Kubernetes API contact", "cloud metadata contact",
                                   "crypto-miner pool connection"},
        "open-multiple-files.scap": {"service-account token read"},  # python reads /tmp/file-N
        "cat_write.scap": {"unexpected process", "shell"},
        "psp_run_as_user_0_container.scap": {"unexpected process", "shell"},
        # psp_write_tmp_test.scap opens /tmp/test for writing: not a token read
    }.get(trace, set())
    assert set(fired(policy(runtime=LOOPBACK_WORLD), ANYWHERE, trace)) == expected


def test_connection_to_neither_gateway_nor_dns_is_a_bypass() -> None:
    got = fired(policy(), ANYWHERE | LOOPBACK_LEAVES_POD, "connect_localhost.scap")
    assert set(got) == {"gateway bypass"}
    assert "127.0.0.1:47192->127.0.0.1:80" in got["gateway bypass"][0]


@pytest.mark.parametrize(("agent", "runtime", "bypass"), [
    ({"port": 80}, {"gateway_cidrs": ["127.0.0.0/8"]}, False),  # the agent's own listener
    ({}, {"gateway_cidrs": ["127.0.0.0/8"]}, True),  # gateway address, another agent's port
    ({"port": 80}, {"gateway_cidrs": ["10.0.0.0/8"]}, True),  # right port, not the gateway
    ({}, {"direct_cidrs": ["127.0.0.1/32"]}, False),  # a declared direct destination
    ({}, {"dns_cidrs": ["127.0.0.0/8"]}, True),  # DNS addresses, but port 80 is not DNS
])
def test_bypass_exceptions_are_exactly_listener_dns_and_direct_cidrs(
        agent: dict[str, int], runtime: dict[str, list[str]], bypass: bool) -> None:
    got = fired(policy(agent=agent, runtime=runtime), ANYWHERE | LOOPBACK_LEAVES_POD,
                "connect_localhost.scap")
    assert ("gateway bypass" in got) is bypass, got


def test_trace_corpus_is_the_one_these_expectations_were_written_for() -> None:
    assert sorted([
        "cat_write.scap", "connect_localhost.scap", "empty.scap", "open-multiple-files.scap",
        "ping_sendto.scap", "psp_privileged.scap", "psp_run_as_user_0_container.scap",
        "psp_write_tmp_test.scap", "syscall.scap",
    ]) == TRACE_NAMES
    assert Path(TRACES / "psp_run_as_user_0_container.scap").stat().st_size > 0
