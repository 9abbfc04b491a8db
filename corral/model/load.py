"""Read ``corral.yaml`` into a ``Policy``, or raise ``PolicyError`` listing every problem.

Positions come from ruamel.yaml's round-trip loader, so each error carries file, line, column and
the path inside the document (``spec.agents[1].egress.allow[3]``). Nothing here writes anything.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from corral.model.errors import Loc, PolicyError, Problem, format_path
from corral.model.lint import lint_policy
from corral.model.policy import Policy


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def _position(doc: Any, loc: Loc) -> tuple[int | None, int | None]:
    """1-based line/column of the deepest node of ``loc`` that exists in the document."""
    line = col = None
    node = doc
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(part, int) and isinstance(node, list) and part < len(node):
                if lc is not None:
                    line, col = lc.item(part)
                node = node[part]
            elif isinstance(part, str) and isinstance(node, dict) and part in node:
                if lc is not None:
                    line, col = lc.value(part) if _is_scalar(node[part]) else lc.key(part)
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    return (line + 1 if line is not None else None, col + 1 if col is not None else None)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The policy class that owns the last element of ``loc`` (for 'expected one of')."""
    cls: type[BaseModel] = Policy
    for part in loc:
        if isinstance(part, int):
            continue
        field = next(
            (f for n, f in cls.model_fields.items() if part in (n, f.alias)), None
        )
        if field is None:
            return None
        nxt = next(_models_in(field.annotation), None)
        if nxt is None:
            return None
        cls = nxt
    return cls


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _models_in(typing.get_args(annotation)[0])
        return
    if origin in (typing.Union, types.UnionType, tuple, list):
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        owner = _model_at(tuple(err["loc"][:-1]))
        if owner is not None:
            names = sorted(f.alias or n for n, f in owner.model_fields.items())
            return f"unknown field; expected one of: {', '.join(names)}"
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if kind in ("value_error", "assertion_error"):
        return msg
    return f"{msg} (got {err['input']!r})" if _is_scalar(err["input"]) else msg


def _meaningful(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop a list's "too short" error when its items have errors of their own: pydantic counts
    only the items that validated, so a list whose every item is wrong is also "empty"."""
    def nested(loc: Loc) -> bool:
        return any(len(e["loc"]) > len(loc) and tuple(e["loc"][:len(loc)]) == loc for e in errors)
    return [e for e in errors if e["type"] != "too_short" or not nested(tuple(e["loc"]))]


def problems_from_validation(file: str, doc: Any, exc: ValidationError) -> list[Problem]:
    out = []
    for err in _meaningful(exc.errors(include_url=False)):
        loc = tuple(err["loc"])
        line, col = _position(doc, loc)
        out.append(Problem(file, format_path(loc), _message(err), line, col))
    return out


MAX_DEPTH = 64
_FLOW = re.compile(r"""'[^'\n]*'|"(?:[^"\\\n]|\\.)*"|#[^\n]*|[\[\]{}]""")


def flow_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting outside quotes and comments, found without parsing:
    the YAML parser needs seconds and all its stack for thousands of levels."""
    depth = deepest = 0
    for m in _FLOW.finditer(text):
        tok = m.group()
        if tok in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif tok in "]}":
            depth = max(0, depth - 1)
    return deepest


def parse_policy(text: str, file: str = "<policy>") -> tuple[Policy, list[Problem]]:
    """Validate policy text; returns the policy and its lint warnings, or raises PolicyError.

    A document nested so deeply that a parser runs out of stack (thousands of ``[[[``) is a
    ``PolicyError`` too, never a ``RecursionError`` that kills a reload or prints a traceback.
    """
    depth = flow_depth(text)
    if depth > MAX_DEPTH:
        raise PolicyError([Problem(file, "(document)",
                                   f"nested {depth} levels deep; a policy needs at most "
                                   f"{MAX_DEPTH}")])
    try:
        return _parse_policy(text, file)
    except RecursionError:
        raise PolicyError([Problem(file, "(document)",
                                   "nested too deeply to be a policy (parser recursion limit)")]
                          ) from None


def _parse_policy(text: str, file: str) -> tuple[Policy, list[Problem]]:
    try:
        doc = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        raise PolicyError(
            [Problem(file, "(document)", f"not valid YAML: {exc.problem or exc}", line, col)]
        ) from None
    except YAMLError as exc:
        raise PolicyError([Problem(file, "(document)", f"not valid YAML: {exc}")]) from None
    if not isinstance(doc, dict):
        raise PolicyError(
            [Problem(file, "(document)",
                     "expected a mapping with apiVersion, kind, metadata and spec")]
        )
    try:
        policy = Policy.model_validate(doc)
    except ValidationError as exc:
        raise PolicyError(problems_from_validation(file, doc, exc)) from None
    warnings = [
        Problem(file, format_path(loc), msg, *_position(doc, loc), severity="warning")
        for loc, msg in lint_policy(policy)
    ]
    return policy, warnings


def load_policy(path: str | Path) -> Policy:
    """Load and validate a policy file (warnings are available through ``load_policy_checked``)."""
    return load_policy_checked(path)[0]


def load_policy_checked(path: str | Path) -> tuple[Policy, list[Problem]]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Problem(str(p), "(document)", f"cannot read policy: {exc}")]) from None
    return parse_policy(text, str(p))
