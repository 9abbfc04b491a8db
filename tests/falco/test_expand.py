"""The list/macro/exception expander: it must resolve a rules file the way Falco's loader does,
or the engine checks built on it would check something other than what Falco runs."""

from __future__ import annotations

import pytest

from corral.compile.falco_expand import (
    ExpandError,
    condition_fields,
    exception_clause,
    expand,
    field_known,
    output_fields,
    resolve_list,
    resolve_macros,
)


def test_list_is_spliced_where_delimited_by_blanks_parens_commas_or_equals() -> None:
    cond = "proc.name in (sh, shells) and proc.pname=shells and shells_x = 1 and x.shells = 2"
    out = resolve_list(cond, "shells", ["bash", "zsh"])
    assert "proc.name in (sh, bash, zsh )" in out
    assert "shells_x" in out and "x.shells" in out  # not delimited: untouched
    assert "proc.pname= bash, zsh" in out  # Falco splices textually, even after '='


def test_empty_list_also_removes_one_comma() -> None:
    assert " ".join(resolve_list("a in (x, l)", "l", []).split()) == "a in (x )"
    assert " ".join(resolve_list("a in (l, x)", "l", []).split()) == "a in ( x)"
    assert " ".join(resolve_list("a in (l)", "l", []).split()) == "a in ( )"


def test_items_with_spaces_are_quoted_once() -> None:
    out = resolve_list("a in (l)", "l", ["two words", '"already quoted"', "plain"])
    assert '"two words"' in out and '"already quoted"' in out and " plain" in out


def test_macros_only_in_expression_position() -> None:
    macros = {"m": "evt.type = execve"}
    out = resolve_macros("m and not proc.name = m and (m or proc.name in (m, x))", macros)
    assert out == ("(evt.type = execve) and not proc.name = m and ((evt.type = execve) or "
                   "proc.name in (m, x))")


def test_macro_name_inside_quotes_or_as_field_prefix_is_not_a_macro() -> None:
    out = resolve_macros('container and container.id != "container"', {"container": "c.x = 1"})
    assert out == '(c.x = 1) and container.id != "container"'


def test_condition_fields_skip_values_and_list_items() -> None:
    fields = condition_fields(
        '(a.b = 1 and not c.d in (x.y, "q r")) or e.f exists and g.h[2] contains "s t"'
        " and k8s.pod.label.app.kubernetes.io/name = x"
    )
    assert fields == {"a.b", "c.d", "e.f", "g.h[2]", "k8s.pod.label.app.kubernetes.io/name"}


def test_unbalanced_parentheses_are_errors() -> None:
    with pytest.raises(ExpandError):
        condition_fields("(a.b = 1")
    with pytest.raises(ExpandError):
        condition_fields("a.b = 1)")


def test_output_fields() -> None:
    assert output_fields("x %proc.name (%fd.name) %proc.aname[2] %k8s.pod.label.a/b y%") == {
        "proc.name", "fd.name", "proc.aname[2]", "k8s.pod.label.a/b"}


def test_exception_with_field_list_builds_falco_clause() -> None:
    exc = {"name": "e", "fields": ["fd.snet", "fd.sport", "proc.name"],
           "comps": ["in", "=", "="],
           "values": [[["10.0.0.0/8", "1.2.3.0/24"], 8080, "a b"], [["10.0.0.0/8"], 53, "c"]]}
    assert exception_clause(exc) == (
        '((fd.snet in (10.0.0.0/8, 1.2.3.0/24) and fd.sport = 8080 and proc.name = "a b")'
        " or (fd.snet in (10.0.0.0/8) and fd.sport = 53 and proc.name = c))"
    )


def test_exception_with_single_field_and_no_values() -> None:
    assert exception_clause({"name": "e", "fields": "proc.name", "comps": "in",
                             "values": ["a", "b"]}) == "(proc.name in (a, b))"
    assert exception_clause({"name": "e", "fields": ["proc.name"], "values": []}) == ""


def test_exception_value_count_must_match_fields() -> None:
    with pytest.raises(ExpandError, match="equal length"):
        exception_clause({"name": "e", "fields": ["a.b", "c.d"], "values": [["x"]]})


def test_expand_resolves_lists_macros_visibility_and_exceptions() -> None:
    docs = [
        {"list": "inner", "items": ["a", "b"]},
        {"list": "outer", "items": ["inner", "c"]},
        {"macro": "first", "condition": "proc.name in (outer)"},
        {"macro": "second", "condition": "first and not third"},  # third: not yet visible
        {"macro": "third", "condition": "evt.num = 0"},
        {"rule": "r", "condition": "second or third", "output": "o", "priority": "INFO",
         "exceptions": [{"name": "x", "fields": ["proc.pname"], "comps": ["="],
                         "values": [["sh"]]}]},
    ]
    out = expand(docs)
    assert out.lists["outer"] == ("a", "b", "c")
    assert "third" in out.macros["second"]  # left unresolved: Falco would refuse it too
    cond = out.rules["r"].condition
    assert cond == ("(((proc.name in ( a, b, c )) and not third) or (evt.num = 0))"
                    " and not ((proc.pname = sh))")


def test_overrides_replace_named_macros_and_unknown_names_fail() -> None:
    docs = [{"macro": "scope", "condition": "k8s.ns.name = x"},
            {"rule": "r", "condition": "scope and proc.name = y"}]
    assert expand(docs, {"scope": "container.id != host"}).rules["r"].condition == (
        "((container.id != host) and proc.name = y)")
    with pytest.raises(ExpandError, match="no macro"):
        expand(docs, {"scoep": "x"})


def test_field_known_handles_arguments() -> None:
    known = {"proc.aname", "k8s.pod.label", "proc.name"}
    assert field_known("proc.name", known)
    assert field_known("proc.aname[2]", known)
    assert field_known("k8s.pod.label[app]", known)
    assert field_known("k8s.pod.label.app.kubernetes.io/name", known)
    assert not field_known("proc.name.x", known)
    assert not field_known("proc.nosuch", known)
