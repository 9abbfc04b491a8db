"""Evaluate the compiled ValidatingAdmissionPolicy against objects with the real CEL engine.

``Checker`` takes the policy's VAP exactly as ``corral render`` writes it (its ``variables``,
``validations`` and their ``messageExpression``) and compiles it once with PyPI
``common-expression-language``. The Python engine has no ``variables`` object, so each
``variables.x`` becomes the identifier ``variables_x``, bound to the variable's value by a
one-element comprehension around the expression (``[def].map(variables_x, expr)[0]``): each
variable is evaluated once per object, before the expressions that use it, as in Kubernetes.

Speed comes from doing little per object: one context is reused, the object is converted into
CEL once, without the map keys no expression reads (``project``), and a single program returns,
per control, ``null`` (passed) or ``[message, failing containers]``, messages evaluated only for
failures, as the API server does. Only when that program errors are the controls evaluated one
by one, so an error is pinned on the control that raised it; a validation that fails to
evaluate is a violation (``failurePolicy: Fail``).

Regex: the engine compiles the pattern of every ``matches()`` call anew (about 100 µs each for
the image rules), so by default ``x.matches(re)`` is rewritten to the global form
``matches(x, re)`` (standard CEL) and served by Python's ``re`` with each pattern compiled once
(``$`` read as end of text, as RE2 does). ``native_regex=True`` keeps the engine's own; the
tests run the image rules both ways and demand the same verdicts.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from corral.check.read import Document
from corral.compile import admission_cel
from corral.compile import admission_pss as pss
from corral.model.policy import Policy


def _cel_engine() -> ModuleType:
    """The engine's compiled module (``cel.cel``: ``compile``, ``Context``) without running the
    package's ``__init__``, which imports its interactive command line (typer, prompt_toolkit,
    rich): 0.2 s of every ``corral check`` start-up. A later ``import cel`` finds this module in
    ``sys.modules`` and reuses it."""
    if "cel.cel" in sys.modules:
        return sys.modules["cel.cel"]
    package = importlib.util.find_spec("cel")  # locates the package, does not run it
    if package is None or not package.submodule_search_locations:
        raise ImportError("common-expression-language (cel) is not installed")
    finder = importlib.machinery.FileFinder(
        package.submodule_search_locations[0],
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES))
    spec = finder.find_spec("cel.cel")
    if spec is None or spec.loader is None:
        raise ImportError("the cel package has no compiled engine module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cel.cel"] = module
    spec.loader.exec_module(module)
    return module


cel = _cel_engine()

_TOKEN = re.compile(
    r"""[rR]?'(?:[^'\\]|\\.)*'|[rR]?"(?:[^"\\]|\\.)*"|\bvariables\.([A-Za-z_][A-Za-z0-9_]*)"""
)


_LITERAL = re.compile(r"[rR]?'(?:[^'\\]|\\.)*'|[rR]?\"(?:[^\"\\]|\\.)*\"")


def bind_variables(expression: str) -> str:
    """``variables.podSpec`` -> ``variables_podSpec``, leaving string literals alone."""

    def swap(m: re.Match[str]) -> str:
        return f"variables_{m.group(1)}" if m.group(1) else m.group(0)

    return _TOKEN.sub(swap, expression)


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_METHOD_MATCHES = re.compile(rf"(?<![\w.])({_IDENT}(?:\.{_IDENT})*)\.matches\(")


def global_matches(expression: str) -> str:
    """``c.image.matches(re)`` -> ``matches(c.image, re)`` (plain select receivers only), so the
    call reaches a registered function; string literals are left alone."""

    out, pos = [], 0
    for lit in _LITERAL.finditer(expression):
        out.append(_METHOD_MATCHES.sub(r"matches(\1, ", expression[pos:lit.start()]))
        out.append(lit.group(0))
        pos = lit.end()
    out.append(_METHOD_MATCHES.sub(r"matches(\1, ", expression[pos:]))
    return "".join(out)


def referenced(expression: str) -> set[str]:
    return {m.group(1) for m in _TOKEN.finditer(expression) if m.group(1)}


def compose(variables: list[tuple[str, str]], body: str) -> str:
    """Wrap ``body`` so every variable it needs (and those they need) is bound once, in order."""
    needed = referenced(body)
    for name, expr in reversed(variables):
        if name in needed:
            needed |= referenced(expr)
    out = bind_variables(body)
    for name, expr in reversed(variables):
        if name in needed:
            out = f"[{bind_variables(expr)}].map(variables_{name}, {out})[0]"
    return out


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    # RE2 reads '$' as end of text; Python's '$' also matches before a final newline.
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def cached_matches(text: str, pattern: str) -> bool:
    if not isinstance(text, str) or not isinstance(pattern, str):
        raise TypeError("matches() takes two strings")
    return _regex(pattern).search(text) is not None


def fields_read(expressions: list[str]) -> frozenset[str]:
    """Every name the CEL could look up as a map key: selected fields (``.name``, ``has(x.f)``)
    and string literals (``'cpu' in limits``). An over-approximation: any key outside it is never
    read by these expressions, which select fields and test literal keys but never iterate or
    measure a map, except ``annotations`` (see ``_annotations``)."""
    keys: set[str] = set()
    for text in expressions:
        keys |= {lit[lit.index(lit[-1]) + 1:-1] for lit in _LITERAL.findall(text)}
        keys |= set(re.findall(rf"\.({_IDENT})", _LITERAL.sub("''", text)))
    return frozenset(keys)


def project(value: Any, keys: frozenset[str]) -> Any:
    """``value`` without the map keys the policy's CEL never reads (fewer conversions into CEL:
    2-3x faster on manifests with env, probes, ports and annotations)."""
    kind = type(value)
    if kind is dict:  # scalars kept inline: one call per container, not per value
        return {k: v if type(v) not in _NESTED else
                (_annotations(v) if k == "annotations" else project(v, keys))
                for k, v in value.items() if k in keys}
    if kind is list:
        return [v if type(v) not in _NESTED else project(v, keys) for v in value]
    return value


_NESTED = (dict, list)


def _annotations(value: Any) -> Any:
    """The annotations the Pod Security checks read (they iterate the map: its keys cannot be
    projected by name, but only these prefixes are ever tested)."""
    if type(value) is not dict:
        return value
    return {k: v for k, v in value.items()
            if isinstance(k, str) and k.startswith(pss.ANNOTATION_PREFIXES)}


_REQUEST = re.compile(rf"\brequest\.({_IDENT})")


def request_fields(expressions: list[str]) -> frozenset[str]:
    """The fields of ``request`` the CEL selects (outside string literals)."""
    return frozenset(m.group(1) for text in expressions
                     for m in _REQUEST.finditer(_LITERAL.sub("''", text)))


def _program(expression: str, what: str) -> Any:
    try:
        return cel.compile(expression)
    except ValueError as exc:
        raise ValueError(f"{what}: CEL does not compile: {exc}") from None


@dataclass(frozen=True, slots=True)
class Violation:
    source: str
    line: int
    kind: str
    namespace: str
    name: str
    control: str
    message: str
    containers: tuple[str, ...]
    action: str

    @property
    def object_ref(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{ns}{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.source, "line": self.line, "kind": self.kind,
            "namespace": self.namespace, "name": self.name, "control": self.control,
            "containers": list(self.containers), "message": self.message, "action": self.action,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    doc: Document
    violations: tuple[Violation, ...] = ()
    skipped: str | None = None  # why the object was not checked (out of the policy's scope)


@dataclass(slots=True)
class _Control:
    """One validation, compiled on first use (only when the whole program errors)."""

    name: str
    message: str  # the static message: used when messageExpression fails, as in Kubernetes
    verdict_cel: str  # true when the object passes
    detail_cel: str  # [messageExpression, failing container names]
    programs: tuple[Any, Any] | None = None

    def compiled(self) -> tuple[Any, Any]:
        if self.programs is None:
            self.programs = (_program(self.verdict_cel, self.name),
                             _program(self.detail_cel, f"{self.name} messageExpression"))
        return self.programs


class Checker:
    """Compiled once per policy; ``check`` is called once per object. Not thread-safe."""

    def __init__(self, policy: Policy, *, all_namespaces: bool = False,
                 native_regex: bool = False, projection: bool = True) -> None:
        spec = admission_cel.vap(policy)["spec"]
        controls = admission_cel.cel_controls(policy)
        self.namespace = policy.spec.namespace
        self.all_namespaces = all_namespaces
        self.action = policy.spec.admission.action
        variables = [(v["name"], v["expression"]) for v in spec["variables"]]
        prepare = (lambda e: e) if native_regex else global_matches
        entries, self.controls = [], []
        for v, ctl in zip(spec["validations"], controls, strict=True):
            detail = f"[{v['messageExpression']}, {ctl.offenders or '[]'}]"
            entries.append(f"(({v['expression']}) ? null : {detail})")
            self.controls.append(_Control(ctl.name, v["message"],
                                          prepare(compose(variables, v["expression"])),
                                          prepare(compose(variables, detail))))
        whole = compose(variables, "[" + ", ".join(entries) + "]")
        self.program = _program(prepare(whole), "policy")  # its parts compile if it does
        self.keys = fields_read([whole]) if projection else None
        self.request_keys = request_fields([whole]) if projection else None
        self._request: dict[str, str] | None = None  # what ctx holds now
        self.ctx = cel.Context()
        if not native_regex:
            self.ctx.add_function("matches", cached_matches)

    def _scope(self, doc: Document) -> str | None:
        if doc.kind not in admission_cel.KINDS:
            return f"kind {doc.kind or '(none)'} is not checked"
        if doc.namespace and doc.namespace != self.namespace and not self.all_namespaces:
            return f"namespace {doc.namespace} is outside the policy ({self.namespace})"
        return None

    def check(self, doc: Document) -> Outcome:
        why = self._scope(doc)
        if why is not None:
            return Outcome(doc, skipped=why)
        obj = doc.obj if self.keys is None else project(doc.obj, self.keys)
        self.ctx.add_variable("object", obj)
        request = {"operation": doc.operation, "subResource": doc.sub_resource,
                   "namespace": doc.namespace or self.namespace, "name": doc.name}
        if self.request_keys is not None:  # converting it costs as much as a small object
            request = {k: v for k, v in request.items() if k in self.request_keys}
        if request != self._request:
            self.ctx.add_variable("request", request)
            self._request = request
        try:
            results = self.program.execute(self.ctx)
        except Exception:  # an error somewhere: evaluate control by control to place it
            return Outcome(doc, tuple(self._one_by_one(doc)))
        found = [self._violation(doc, c.name, *_detail(r, c.message))
                 for c, r in zip(self.controls, results, strict=True) if r is not None]
        return Outcome(doc, tuple(found))

    def _one_by_one(self, doc: Document) -> list[Violation]:
        found = []
        for c in self.controls:
            verdict, detail_program = c.compiled()
            try:
                if verdict.execute(self.ctx) is True:
                    continue
            except Exception as exc:  # failurePolicy Fail: an error refuses
                found.append(self._violation(doc, c.name, _error(exc), ()))
                continue
            try:
                detail = detail_program.execute(self.ctx)
            except Exception:  # as in Kubernetes: fall back to the static message
                detail = None
            found.append(self._violation(doc, c.name, *_detail(detail, c.message)))
        return found

    def _violation(self, doc: Document, control: str, message: str,
                   containers: tuple[str, ...]) -> Violation:
        return Violation(doc.source, doc.line, doc.kind, doc.namespace, doc.name, control,
                         message, containers, self.action)


def _error(exc: Exception) -> str:
    what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
    return f"could not evaluate (the API server would refuse it: failurePolicy Fail): {what}"


def _detail(result: Any, fallback: str) -> tuple[str, tuple[str, ...]]:
    """``[message, names]`` from the program -> (message, container names)."""
    if not isinstance(result, list) or len(result) != 2:
        return fallback, ()
    message, names = result
    text = message if isinstance(message, str) and message else fallback
    return text, tuple(str(n) for n in names) if isinstance(names, list) else ()
