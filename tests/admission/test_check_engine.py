"""Units of the check engine's CEL plumbing: variable binding, regex rewriting, document lines."""

from __future__ import annotations

import cel
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.check.engine import cached_matches, compose, global_matches
from corral.check.read import ReadError, read_text

pytestmark = pytest.mark.engine


def test_compose_binds_needed_variables_once_in_order() -> None:
    variables = [("a", "x + 1"), ("b", "variables.a * 2"), ("c", "99")]
    expr = compose(variables, "variables.b + 'variables.c'.size()")
    assert "variables_c" not in expr  # not needed; the string literal is not a reference
    assert cel.compile(expr).execute({"x": 1}) == 4 + len("variables.c")


def test_global_matches_rewrites_select_receivers_only() -> None:
    src = "c.image.matches(r'^a$') && 'x.matches(' == s && (a + b).matches('q')"
    assert global_matches(src) == (
        "matches(c.image, r'^a$') && 'x.matches(' == s && (a + b).matches('q')")


@pytest.mark.parametrize(("text", "pattern"), [
    ("abc", "^a.c$"), ("abc\n", "^abc$"), ("ABC", "^[a-z]+$"), ("a.b", r"^a\.b$"),
    ("axb", r"^a\.b$"), ("", "^$"), ("x@y", "^[^@]*$"),
])
def test_cached_matches_agrees_with_engine(text: str, pattern: str) -> None:
    native = cel.evaluate(f"t.matches(r'{pattern}')", {"t": text})
    assert cached_matches(text, pattern) is native


def test_document_lines_skip_comments_and_blank_lines() -> None:
    docs = list(read_text("f.yaml", "# head\n\nkind: Pod\n---\n# c\nkind: Deployment\n"))
    assert [(d.kind, d.line) for d in docs] == [("Pod", 3), ("Deployment", 6)]


def test_read_errors_name_line() -> None:
    with pytest.raises(ReadError) as exc:
        list(read_text("f.yaml", "kind: Pod\n---\nkind: Pod\nspec: [\n"))
    assert exc.value.line is not None and exc.value.line >= 4
    with pytest.raises(ReadError, match="expected a Kubernetes object"):
        list(read_text("f.yaml", "- 1\n- 2\n"))
    with pytest.raises(ReadError) as jexc:
        list(read_text("f.json", '{"kind": "Pod",\n "x": }'))
    assert jexc.value.line == 2


# --- the fast YAML builder gives what PyYAML's safe loader gives -----------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.text(max_size=12),
    st.sampled_from(["yes", "No", "on", "OFF", "0777", "0x1F", "1_000", "12:30", "~", "null",
                     "2026-11-26", "3.5e3", ".inf", "'quoted'", "<<", "=", "true"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(min_size=1, max_size=8) | st.sampled_from(["yes", "1", "null"]), inner, max_size=4),
    max_leaves=20)


def _loaded(text: str) -> list[object]:
    return [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]


@settings(max_examples=200, deadline=None)
@given(docs=st.lists(VALUES, min_size=1, max_size=3))
def test_builder_equals_safe_loader(docs: list[object]) -> None:
    text = "---\n".join(yaml.safe_dump({"kind": "Pod", "v": d}) for d in docs)
    ours = [d.obj for d in read_text("f.yaml", text)]
    assert ours == _loaded(text)


@pytest.mark.parametrize("text", [
    "kind: Pod\nbase: &b {a: 1}\nx:\n  <<: *b\n  c: 2\n",          # merge key
    "kind: Pod\ns: !!set {a, b}\n",                               # tagged mapping
    "kind: Pod\nv: [yes, no, on, off, 0o17, 017, 0x1f, 1_0, 1:30, 2026-11-26]\n",
    "kind: Pod\nb: !!binary aGVsbG8=\nf: !!float 1\nstr: !!str 12\n",
    "kind: Pod\na: &x [1, 2]\nb: *x\n1: one\ntrue: t\n",
])
def test_builder_edge_cases(text: str) -> None:
    assert [d.obj for d in read_text("f.yaml", text)] == _loaded(text)
