"""Expand a Falco rules file into self-contained filter expressions, the way Falco does. Pure.

Where it sits: ``corral.compile.falco`` emits rules that use lists, macros and ``exceptions``;
this module turns each rule into one plain condition (lists spliced, macros inlined, exceptions
appended) so an engine that knows only filter syntax, such as Debian's ``sysdig``, can compile
and replay it. It follows Falco's rule loader:

* lists are spliced textually wherever their name stands between blanks or ``(),=``; items
  containing a space are double-quoted; an empty list also removes one adjacent comma; a list
  item naming an earlier list is replaced by that list's items;
* macros are inlined (in parentheses) where a boolean expression is expected, never where a
  value is; a macro sees only macros defined before it, a rule sees all of them;
* each ``exceptions`` item adds ``and not (...)`` to the rule's condition.

It also names the fields a condition or output uses, for checking them against a field list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_BLANKS = " \t\n\r"
_DELIMS = _BLANKS + "(),="
_LIST_OPS = frozenset({"in", "intersects", "pmatch"})
_BOOL_OPS = frozenset({"and", "or", "not"})
_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    r"""|(?P<op>==|!=|<=|>=|=|<|>)|(?P<punct>[(),])|(?P<word>[^\s()",'=!<>]+))"""
)
_OUTPUT_FIELD = re.compile(r"%([A-Za-z_][A-Za-z0-9_.\[\]/:-]*[A-Za-z0-9_\]])")


class ExpandError(ValueError):
    """A rules file Falco itself would refuse (unknown macro, bad token, ...)."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # str | op | punct | word
    text: str
    start: int
    end: int


def tokenize(condition: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(condition):
        if condition[pos:].strip() == "":
            break
        m = _TOKEN.match(condition, pos)
        if m is None or m.lastgroup is None:
            raise ExpandError(f"cannot read condition at {pos}: {condition[pos:pos + 30]!r}")
        kind = m.lastgroup
        out.append(Token(kind, m.group(kind), m.start(kind), m.end(kind)))
        pos = m.end()
    return out


def _expression_words(tokens: list[Token]) -> list[Token]:
    """Words standing where a check or a macro may stand (not values, not list items)."""
    found: list[Token] = []
    stack: list[str] = []
    prev: Token | None = None
    for tok in tokens:
        if tok.kind == "punct" and tok.text == "(":
            opener = prev.text if prev is not None and prev.kind == "word" else ""
            stack.append("list" if opener in _LIST_OPS else "expr")
        elif tok.kind == "punct" and tok.text == ")":
            if not stack:
                raise ExpandError("unbalanced ')' in condition")
            stack.pop()
        elif (tok.kind == "word" and tok.text not in _BOOL_OPS
              and (not stack or stack[-1] == "expr") and _at_expression(prev)):
            found.append(tok)
        prev = tok
    if stack:
        raise ExpandError("unbalanced '(' in condition")
    return found


def _at_expression(prev: Token | None) -> bool:
    if prev is None:
        return True
    if prev.kind == "punct":
        return prev.text == "("
    return prev.kind == "word" and prev.text in _BOOL_OPS


def resolve_list(condition: str, name: str, items: Iterable[str]) -> str:
    """Splice one list into a condition, by Falco's textual rule (see module docstring)."""
    sub = ", ".join(_quote(i) for i in items)
    out = condition
    start = out.find(name)
    while start != -1:
        end = start + len(name)
        before_ok = start == 0 or out[start - 1] in _DELIMS
        after_ok = end >= len(out) or out[end] in _DELIMS
        if before_ok and after_ok:
            while start > 0 and out[start - 1] in _BLANKS:
                start -= 1
            while end < len(out) and out[end] in _BLANKS:
                end += 1
            if not sub:
                if start > 0 and out[start - 1] == ",":
                    start -= 1
                elif end < len(out) and out[end] == ",":
                    end += 1
            out = (out[:start] + " " if start > 0 else "") + sub + " " + out[end:]
            start += len(sub) + 1
        start = out.find(name, start + 1)
    return out


def _quote(item: str) -> str:
    if " " in item and item[:1] not in ("'", '"'):
        return f'"{item}"'
    return item


def resolve_macros(condition: str, macros: Mapping[str, str]) -> str:
    """Inline every macro standing in expression position (one level: bodies are resolved)."""
    tokens = tokenize(condition)
    pieces: list[str] = []
    last = 0
    for tok in _expression_words(tokens):
        if tok.text in macros:
            pieces.append(condition[last:tok.start])
            pieces.append(f"({macros[tok.text]})")
            last = tok.end
    pieces.append(condition[last:])
    return "".join(pieces)


def condition_fields(condition: str) -> set[str]:
    """Fields a (fully expanded) condition reads: every word in check position."""
    return {t.text for t in _expression_words(tokenize(condition))}


def output_fields(output: str) -> set[str]:
    return set(_OUTPUT_FIELD.findall(output))


def _items(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def exception_clause(exc: Mapping[str, Any]) -> str:
    """The ``(...)`` Falco builds for one ``exceptions`` item; "" when it has no values."""
    fields, comps, values = exc.get("fields"), exc.get("comps", "="), exc.get("values", [])
    if isinstance(fields, str):
        quoted = [_quote(str(v)) for v in values]
        return f"({fields} {comps} ({', '.join(quoted)}))" if quoted else ""
    if not isinstance(fields, list):
        raise ExpandError(f"exception {exc.get('name')!r}: fields must be a string or a list")
    comp_list = comps if isinstance(comps, list) else ["="] * len(fields)
    tuples = [_exception_tuple(exc, fields, comp_list, v) for v in values]
    return f"({' or '.join(tuples)})" if tuples else ""


def _exception_tuple(exc: Mapping[str, Any], fields: list[Any], comps: list[Any],
                     values: Any) -> str:
    if not isinstance(values, list) or len(values) != len(fields):
        raise ExpandError(f"exception {exc.get('name')!r}: fields and values lists must have "
                          "equal length")
    parts = []
    for field, comp, value in zip(fields, comps, values, strict=True):
        if isinstance(value, list):
            text = "(" + ", ".join(_quote(str(v)) for v in value) + ")"
        elif comp in _LIST_OPS:
            text = str(value) if str(value).startswith("(") else f"({value})"
        else:
            text = _quote(str(value))
        parts.append(f"{field} {comp} {text}")
    return "(" + " and ".join(parts) + ")"


@dataclass(frozen=True, slots=True)
class ExpandedRule:
    name: str
    condition: str  # lists, macros and exceptions resolved: a plain filter expression
    output: str
    priority: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Expanded:
    lists: dict[str, tuple[str, ...]]
    macros: dict[str, str]  # name -> fully resolved condition
    rules: dict[str, ExpandedRule]


def expand(documents: Iterable[Mapping[str, Any]],
           overrides: Mapping[str, str] | None = None) -> Expanded:
    """Resolve a rules file. ``overrides`` replaces named macros' conditions before use (how
    tests scope a rule to a capture without Kubernetes metadata; nothing is replaced silently:
    an override naming no macro is an error)."""
    docs = list(documents)
    lists: dict[str, tuple[str, ...]] = {}
    for doc in docs:
        if "list" in doc:
            lists[doc["list"]] = _list_items(doc.get("items", []), lists)
    macros: dict[str, str] = {}
    pending = dict(overrides or {})
    for doc in docs:
        if "macro" in doc:
            body = pending.pop(doc["macro"], doc["condition"])
            macros[doc["macro"]] = _resolve(body, lists, macros)
    if pending:
        raise ExpandError(f"overrides name no macro in the file: {sorted(pending)}")
    rules = {d["rule"]: _expand_rule(d, lists, macros) for d in docs if "rule" in d}
    return Expanded(lists, macros, rules)


def _list_items(items: Iterable[Any], lists: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    out: list[str] = []
    for item in items:
        out.extend(lists.get(str(item), (str(item),)))
    return tuple(out)


def _resolve(condition: str, lists: Mapping[str, tuple[str, ...]],
             macros: Mapping[str, str]) -> str:
    for name, items in lists.items():
        condition = resolve_list(condition, name, items)
    return resolve_macros(condition, macros)


def _expand_rule(doc: Mapping[str, Any], lists: Mapping[str, tuple[str, ...]],
                 macros: Mapping[str, str]) -> ExpandedRule:
    condition = f"({doc['condition']})"
    for exc in doc.get("exceptions", []):
        clause = exception_clause(exc)
        condition += f" and not {clause}" if clause else ""
    return ExpandedRule(
        name=doc["rule"], condition=" ".join(_resolve(condition, lists, macros).split()),
        output=doc.get("output", ""), priority=doc.get("priority", ""),
        tags=tuple(doc.get("tags", ())),
    )


def field_known(name: str, known: set[str]) -> bool:
    """Whether ``name`` (possibly with an argument: ``proc.aname[2]``, ``k8s.pod.label.app``)
    is one of ``known``."""
    if name in known:
        return True
    bare = re.sub(r"\[[^\]]*\]$", "", name)
    if bare != name:
        return bare in known
    return any(name.startswith(f + ".") for f in known if f in _DOTTED_ARG_FIELDS)


# Fields whose argument may follow a dot (documented in Falco's supported-fields reference).
_DOTTED_ARG_FIELDS = frozenset({
    "k8s.pod.label", "container.label", "evt.arg", "evt.rawarg", "evt.type.is",
})
