"""Property tests: for any valid agents (names, selectors, allowlists) and exceptions, the rules
file is schema-valid, expands completely, uses only known fields, and (engine) compiles."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.compile.falco import rule_names
from corral.compile.falco_expand import condition_fields, field_known
from tests.falco.engine import (
    CORPORA,
    compiles,
    documents,
    expanded,
    needs_corpora,
    needs_sysdig,
    policy,
    supported_fields,
)

pytestmark = needs_corpora

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_process = st.from_regex(r"[A-Za-z0-9_.+-]{1,15}", fullmatch=True)
_label_key = st.one_of(_label, st.builds(lambda p, n: f"{p}.io/{n}", _label, _label))


@st.composite
def agents(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(_label, min_size=1, max_size=4, unique=True))
    return [{
        "name": name,
        "selector": draw(st.dictionaries(_label_key, _label, min_size=1, max_size=3)),
        "processes": draw(st.lists(_process, max_size=6, unique=True)),
        "port": 9000 + i,
    } for i, name in enumerate(names)]


_exception = st.fixed_dictionaries({
    "name": st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    "rule": st.sampled_from(["unexpected_process", "shell", "sa_token", "gateway_bypass"]),
    "when": st.dictionaries(
        st.sampled_from(["proc.name", "proc.pname", "fd.name", "container.image.repository"]),
        st.one_of(_process, st.lists(_process, min_size=1, max_size=3, unique=True)),
        min_size=1, max_size=2),
})


def _policy(agent_list: list[dict[str, Any]], exceptions: list[dict[str, Any]]) -> Any:
    first, *rest = agent_list
    unique = list({(e["rule"], e["name"]): e for e in exceptions}.values())
    return policy(agent=first, more_agents=rest, runtime={"exceptions": unique})


SCHEMA = json.loads((CORPORA / "rule_schema.json").read_text(encoding="utf-8")) \
    if CORPORA.is_dir() else {}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agents(), st.lists(_exception, max_size=4))
def test_any_policy_renders_valid_fully_expanded_rules(agent_list: list[dict[str, Any]],
                                                       exceptions: list[dict[str, Any]]) -> None:
    p = _policy(agent_list, exceptions)
    docs = documents(p)
    jsonschema.validate(docs, SCHEMA)
    names = rule_names(p)
    assert len(names) == len(set(names))
    known = supported_fields()
    defined = {d.get("list") or d.get("macro") for d in docs} - {None}
    for name, rule in expanded(p).rules.items():
        fields = condition_fields(rule.condition)
        assert all(field_known(f, known) for f in fields), (name, fields)
        assert not defined & set(re.findall(r"[A-Za-z0-9_]+", rule.condition)), name


@pytest.mark.engine
@needs_sysdig
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agents(), st.lists(_exception, max_size=3))
def test_any_allowlist_and_exception_compiles_in_sysdig(agent_list: list[dict[str, Any]],
                                                       exceptions: list[dict[str, Any]]) -> None:
    p = _policy(agent_list[:1], exceptions)
    for name, rule in expanded(p).rules.items():
        if "dropped" in name:  # proc.is_exe_upper_layer: see test_engine.ONLY_FIELDS_CHECKED
            continue
        run = compiles(rule.condition)
        assert run.code == 0, f"{name}: {run.err}\n{rule.condition}"
