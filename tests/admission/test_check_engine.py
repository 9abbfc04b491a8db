"""Units of the check engine's CEL plumbing: variable binding, regex rewriting, document lines."""

from __future__ import annotations

import cel
import pytest

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
