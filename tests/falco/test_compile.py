"""corral render, falco target: what the rules say, per agent, and that the files are valid
Falco rules (JSON schema) whose every field exists in Falco's supported-fields reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from corral.compile.falco import RULES_FILE, VALUES_FILE, compile_falco, rule_names, rules_text
from corral.compile.falco_expand import condition_fields, field_known, output_fields
from corral.compile.render import render_all
from corral.model.errors import PolicyError
from corral.model.load import load_policy
from corral.model.policy import Policy
from tests.falco.engine import CORPORA, documents, expanded, needs_corpora, policy, supported_fields

EXAMPLE = Path(__file__).parents[2] / "examples" / "corral.yaml"
KINDS_WITH_ALLOWLIST = 10  # 9 kinds, crypto-miner split into process and pool connection


def rules(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["rule"]: d for d in docs if "rule" in d}


def policies() -> list[Policy]:
    """The example and policies exercising every optional branch of the compiler."""
    return [
        load_policy(EXAMPLE),
        policy(runtime={"direct_cidrs": ["10.20.0.0/16"], "exceptions": [
            {"name": "probe", "rule": "unexpected_process", "when": {"proc.name": "curl",
                                                                   "proc.pname": "sh"}},
            {"name": "tools", "rule": "package_tool", "agents": ["research"],
             "when": {"proc.name": ["pip", "pip3"]}},
        ]}),
        policy(agent={"processes": []}),
        policy(agent={"processes": ["python3", "sh", "bash", "dash", "ash", "csh", "ksh", "tcsh",
                                    "zsh", "fish", "busybox"]}),
    ]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((CORPORA / "rule_schema.json").read_text(encoding="utf-8"))


def test_render_writes_rules_and_values_in_the_falco_folder() -> None:
    files = render_all(load_policy(EXAMPLE), {"falco"})["falco"]
    assert set(files) == {RULES_FILE, VALUES_FILE}


def test_every_agent_gets_every_rule_kind_scoped_by_namespace_and_labels() -> None:
    p = load_policy(EXAMPLE)
    docs = documents(p)
    names = rule_names(p)
    assert len(names) == len(p.spec.agents) * KINDS_WITH_ALLOWLIST == len(set(names))
    macros = {d["macro"]: d["condition"] for d in docs if "macro" in d}
    assert macros["corral_scope_research"] == (
        '(container.id != host and k8s.ns.name = "ai-workloads"'
        ' and k8s.pod.label.app = "research-agent")')
    for name, rule in rules(docs).items():
        agent = name.rsplit("[", 1)[1].rstrip("]")
        assert f"corral_scope_{agent}\n" in rule["condition"], name
        assert f"corral_agent:{agent}" in rule["tags"] and "corral" in rule["tags"]
        assert any(t.startswith("T") and t[1:5].isdigit() for t in rule["tags"]), name
        for field in ("%k8s.ns.name", "%k8s.pod.name", "%container.id", "%proc.cmdline",
                      "%user.name"):
            assert field in rule["output"], (name, field)


def test_every_selector_label_is_matched_including_prefixed_keys() -> None:
    docs = documents(policy())
    scope = next(d["condition"] for d in docs if d.get("macro") == "corral_scope_research")
    assert 'k8s.pod.label.app = "research-agent"' in scope
    assert 'k8s.pod.label.app.kubernetes.io/part-of = "agents"' in scope
    assert 'k8s.ns.name = "ai-workloads"' in scope


def test_allowed_processes_leave_the_shell_and_tool_lists() -> None:
    docs = documents(load_policy(EXAMPLE))
    lists = {d["list"]: d["items"] for d in docs if "list" in d}
    assert lists["corral_processes_coder"] == ["python3", "pip", "git", "node", "npm"]
    assert "pip" not in lists["corral_tools_coder"]
    assert "npm" not in lists["corral_tools_coder"]
    assert "pip" in lists["corral_tools_research"]
    assert "bash" in lists["corral_shells_research"]


def test_no_allowlist_means_no_unexpected_process_rule_and_all_shells_allowed_no_shell_rule(
) -> None:
    assert not any("unexpected process" in n for n in rule_names(policy(agent={"processes": []})))
    names = rule_names(policies()[3])
    assert not any(n.startswith("corral shell") for n in names)
    assert any("unexpected process" in n for n in names)


def test_disabled_kinds_are_not_rendered_and_disabled_runtime_renders_nothing() -> None:
    p = policy(runtime={"disable": ["gateway_bypass", "crypto_miner"]})
    names = rule_names(p)
    assert not any("bypass" in n or "crypto" in n for n in names)
    assert len(names) == KINDS_WITH_ALLOWLIST - 3
    assert compile_falco(policy(runtime={"enabled": False})) == {}


def test_gateway_bypass_exceptions_name_the_agents_listener_and_dns() -> None:
    p = load_policy(EXAMPLE)
    by_name = rules(documents(p))
    for agent, port in p.spec.listener_ports().items():
        exc = by_name[f"corral gateway bypass [{agent}]"]["exceptions"]
        assert exc[0] == {"name": "gateway_listener_and_cluster_dns",
                          "fields": ["fd.snet", "fd.sport"], "comps": ["in", "="],
                          "values": [[["10.96.0.0/12"], port], [["10.96.0.0/12"], 53]]}


def test_policy_exceptions_group_by_fields_and_scope_by_agent() -> None:
    p = policy(
        runtime={"exceptions": [
            {"name": "probe", "rule": "unexpected_process",
             "when": {"proc.pname": "sh", "proc.name": "curl"}},
            {"name": "probe2", "rule": "unexpected_process",
             "when": {"proc.name": "wget", "proc.pname": "sh"}},
            {"name": "other_agent", "rule": "unexpected_process", "agents": ["helper"],
             "when": {"proc.name": "jq"}},
        ]},
        more_agents=[{"name": "helper", "selector": {"app": "helper"}, "processes": ["node"]}],
    )
    by_name = rules(documents(p))
    research = by_name["corral unexpected process [research]"]["exceptions"]
    assert research == [{"name": "probe", "fields": ["proc.name", "proc.pname"],
                         "comps": ["=", "="], "values": [["curl", "sh"], ["wget", "sh"]]}]
    helper = by_name["corral unexpected process [helper]"]["exceptions"]
    assert [e["name"] for e in helper] == ["probe", "other_agent"]


def test_equals_in_comps_survives_yaml_round_trip_quoted() -> None:
    text = rules_text(load_policy(EXAMPLE))
    assert "comps: [in, '=']" in text
    loaded = yaml.safe_load(text)  # a bare = would be YAML's value tag and fail to load
    comps = [e["comps"] for d in loaded for e in d.get("exceptions", [])]
    assert comps and all(c == ["in", "="] for c in comps)


def test_render_is_deterministic() -> None:
    assert rules_text(load_policy(EXAMPLE)) == rules_text(load_policy(EXAMPLE))


def test_values_enable_json_http_output_and_carry_the_rules() -> None:
    p = policy(runtime={"control_url": "https://corral.example:9443/v1/falco"})
    files = compile_falco(p)
    values = yaml.safe_load(files[VALUES_FILE].render())
    falco = values["falco"]
    assert falco["json_output"] is True
    assert falco["json_include_output_property"] is True
    assert falco["json_include_tags_property"] is True
    # falco.yaml's http_output options: mutual TLS with the client Secret mounted by the chart
    assert falco["http_output"] == {
        "enabled": True, "url": "https://corral.example:9443/v1/falco",
        "user_agent": "falcosecurity/falco", "insecure": False,
        "ca_cert": "/etc/corral-client/ca.crt", "mtls": True,
        "client_cert": "/etc/corral-client/tls.crt", "client_key": "/etc/corral-client/tls.key",
        "keep_alive": True}
    assert values["mounts"] == {
        "volumes": [{"name": "corral-client", "secret": {"secretName": "corral-falco-client",
                                                         "defaultMode": 0o400}}],
        "volumeMounts": [{"name": "corral-client", "mountPath": "/etc/corral-client",
                          "readOnly": True}]}
    assert values["customRules"][RULES_FILE] == files[RULES_FILE].render()


def test_plain_http_control_url_has_no_tls_options() -> None:
    p = policy(runtime={"control_url": "http://127.0.0.1:8765/v1/falco"})
    values = yaml.safe_load(compile_falco(p)[VALUES_FILE].render())
    assert "mtls" not in values["falco"]["http_output"] and "mounts" not in values


def test_default_control_url_points_at_corral_serve() -> None:
    values = yaml.safe_load(compile_falco(policy())[VALUES_FILE].render())
    assert values["falco"]["http_output"]["url"] == (
        "https://corral-control.corral-system.svc:8765/v1/falco")


@pytest.mark.parametrize(("runtime", "where"), [
    ({"gateway_cidrs": ["fd00::/8"]}, "gateway_cidrs"),
    ({"gateway_cidrs": []}, "gateway_cidrs"),
    ({"metadata_addresses": ["metadata.google.internal"]}, "metadata_addresses"),
    ({"miner_domains": ["pool example.com"]}, "miner_domains"),
    ({"token_paths": ["relative/path"]}, "token_paths"),
    ({"control_url": "ftp://x"}, "control_url"),
    ({"disable": ["no_such_rule"]}, "disable"),
    ({"exceptions": [{"name": "x", "rule": "shell", "when": {"proc.nosuch": "a"}}]},
     "exceptions"),
    ({"exceptions": [{"name": "x", "rule": "shell", "when": {"proc.name": "a) or (x"}}]},
     "exceptions"),
    ({"exceptions": [{"name": "x", "rule": "shell", "when": {"proc.name": []}}]}, "exceptions"),
    ({"exceptions": [{"name": "x", "rule": "shell", "when": {"proc.name": "a"}},
                     {"name": "x", "rule": "shell", "when": {"proc.name": "b"}}]}, "exceptions"),
])
def test_bad_runtime_sections_are_refused_with_their_path(runtime: dict[str, Any],
                                                          where: str) -> None:
    with pytest.raises(PolicyError) as err:
        policy(runtime=runtime)
    assert any(f"spec.runtime.{where}" in p.path for p in err.value.problems), err.value.problems


@needs_corpora
@pytest.mark.parametrize("index", range(4))
def test_rules_file_validates_against_falco_rule_schema(schema: dict[str, Any],
                                                        index: int) -> None:
    jsonschema.validate(documents(policies()[index]), schema)


@needs_corpora
def test_schema_check_can_fail(schema: dict[str, Any]) -> None:
    docs = documents(load_policy(EXAMPLE))
    bad = [*docs, {"rule": "x", "condition": "evt.num = 0", "priority": "SEVERE"}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([*docs, {"rule": "x", "exceptions": [{"fields": ["a"]}]}], schema)


@needs_corpora
@pytest.mark.parametrize("index", range(4))
def test_every_field_exists_in_falcos_supported_fields(index: int) -> None:
    known = supported_fields()
    out = expanded(policies()[index])
    for name, rule in out.rules.items():
        unknown = {f for f in condition_fields(rule.condition) if not field_known(f, known)}
        unknown |= {f for f in output_fields(rule.output) if not field_known(f, known)}
        assert not unknown, f"{name}: {sorted(unknown)} not in supported-fields.md"


@needs_corpora
def test_field_check_can_fail() -> None:
    known = supported_fields()
    assert len(known) > 200
    assert not field_known("proc.nosuch", known)
    assert not field_known("evt.dir", known)  # deprecated in current Falco: not in the reference
    assert field_known("proc.is_exe_upper_layer", known)
    assert field_known("k8s.pod.label.app.kubernetes.io/name", known)


@needs_corpora
def test_corral_render_writes_loadable_schema_valid_falco_files(
        tmp_path: Path, schema: dict[str, Any]) -> None:
    from corral.cli import main

    assert main(["render", "-f", str(EXAMPLE), "-o", str(tmp_path)]) == 0
    rules_on_disk = (tmp_path / "falco" / RULES_FILE).read_text(encoding="utf-8")
    jsonschema.validate(yaml.safe_load(rules_on_disk), schema)
    values = yaml.safe_load((tmp_path / "falco" / VALUES_FILE).read_text(encoding="utf-8"))
    assert values["customRules"][RULES_FILE] == rules_on_disk


def test_disabled_rules_leave_no_unused_lists_or_macros() -> None:
    p = policy(runtime={"disable": ["crypto_miner", "drop_and_execute", "unexpected_process"]})
    names = {d.get("list", d.get("macro")) for d in documents(p)}
    assert not {"corral_miner_ports", "corral_miner_domains", "corral_miner_binaries",
                "corral_miner_command", "corral_miner_destination", "corral_exe_upper_layer",
                "corral_processes_research"} & names
    assert {"corral_shells_research", "corral_scope_research"} <= names


@pytest.mark.parametrize("index", range(4))
def test_every_list_and_macro_is_used_by_a_rule(index: int) -> None:
    out = expanded(policies()[index])
    text = " ".join(r.condition for r in out.rules.values())
    docs = documents(policies()[index])
    for d in docs:
        name = d.get("list") or d.get("macro")
        if name:  # expanded conditions hold no names: a used item left its items/condition
            assert name not in text, f"{name} left unexpanded"
    raw = " ".join(d["condition"] for d in docs if "condition" in d)
    for d in docs:
        if "list" in d or "macro" in d:
            assert (d.get("list") or d["macro"]) in raw, f"{d} is used by nothing"


def test_agent_names_cannot_collide_with_each_other_or_shared_names() -> None:
    names = ["agent", "processes", "a", "a-processes", "miner", "kube-api", "shells-a", "tools"]
    p = policy(agent={"name": names[0]}, more_agents=[
        {"name": n, "selector": {"app": n}, "processes": ["python3"], "port": 9100 + i}
        for i, n in enumerate(names[1:])])
    docs = documents(p)
    defined = [d.get("list") or d.get("macro") for d in docs if "list" in d or "macro" in d]
    assert len(defined) == len(set(defined))
    assert len(rule_names(p)) == len(names) * KINDS_WITH_ALLOWLIST


def test_corral_schema_describes_a_runtime_section(capsys: pytest.CaptureFixture[str]) -> None:
    from corral.cli import main

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    doc["spec"]["runtime"] = {"disable": ["package_tool"], "direct_cidrs": ["10.20.0.0/16"],
                              "exceptions": [{"name": "probe", "rule": "unexpected_process",
                                              "when": {"proc.name": "curl"}}]}
    jsonschema.validate(doc, schema)
    doc["spec"]["runtime"]["disable"] = ["no_such_rule"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
