"""Evaluate the compiled ValidatingAdmissionPolicy against one object with the real CEL engine.

``Checker`` takes the policy's VAP exactly as ``corral render`` writes it, compiles every variable
and validation once with PyPI ``common-expression-language``, then for each object builds one
CEL context and evaluates the variables in order (binding each result, as the API server does)
and every validation on it. The Python engine has no ``variables`` object, so ``variables.x`` is
bound as the identifier ``variables_x`` (a textual rename outside string literals). A validation
that fails to evaluate is a violation, as under the policy's ``failurePolicy: Fail``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cel

from corral.check.read import Document
from corral.compile import admission_cel
from corral.model.policy import Policy

_TOKEN = re.compile(
    r"""[rR]?'(?:[^'\\]|\\.)*'|[rR]?"(?:[^"\\]|\\.)*"|\bvariables\.([A-Za-z_][A-Za-z0-9_]*)"""
)


def bind_variables(expression: str) -> str:
    """``variables.podSpec`` -> ``variables_podSpec``, leaving string literals alone."""

    def swap(m: re.Match[str]) -> str:
        return f"variables_{m.group(1)}" if m.group(1) else m.group(0)

    return _TOKEN.sub(swap, expression)


def _program(expression: str, what: str) -> Any:
    try:
        return cel.compile(bind_variables(expression))
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


@dataclass(frozen=True, slots=True)
class _Validation:
    control: str
    expression: Any
    message_expression: Any
    message: str
    offenders: Any | None


class Checker:
    """Compiled once per policy; ``check`` is called once per object."""

    def __init__(self, policy: Policy, *, all_namespaces: bool = False) -> None:
        vap = admission_cel.vap(policy)
        spec = vap["spec"]
        controls = admission_cel.cel_controls(policy)
        self.namespace = policy.spec.namespace
        self.all_namespaces = all_namespaces
        self.action = policy.spec.admission.action
        self.variables = [
            (f"variables_{v['name']}", _program(v["expression"], f"variable {v['name']}"))
            for v in spec["variables"]
        ]
        self.validations = [
            _Validation(
                ctl.name,
                _program(v["expression"], ctl.name),
                _program(v["messageExpression"], f"{ctl.name} messageExpression"),
                v["message"],
                _program(ctl.offenders, f"{ctl.name} offenders") if ctl.offenders else None,
            )
            for v, ctl in zip(spec["validations"], controls, strict=True)
        ]

    def _scope(self, doc: Document) -> str | None:
        if doc.kind not in admission_cel.KINDS:
            return f"kind {doc.kind or '(none)'} is not checked"
        if doc.namespace and doc.namespace != self.namespace and not self.all_namespaces:
            return f"namespace {doc.namespace} is outside the policy ({self.namespace})"
        return None

    def context(self, doc: Document) -> Any:
        """A CEL context with object, request and every variable bound, in order."""
        ctx = cel.Context()
        ctx.add_variable("object", doc.obj)
        ctx.add_variable("request", {
            "operation": doc.operation, "subResource": doc.sub_resource,
            "namespace": doc.namespace or self.namespace, "name": doc.name,
        })
        for name, program in self.variables:
            ctx.add_variable(name, program.execute(ctx))
        return ctx

    def check(self, doc: Document) -> Outcome:
        why = self._scope(doc)
        if why is not None:
            return Outcome(doc, skipped=why)
        try:
            ctx = self.context(doc)
        except Exception as exc:  # any engine error: the API server would refuse
            return Outcome(doc, (self._violation(doc, "object", _error(exc), ()),))
        found = []
        for v in self.validations:
            try:
                if v.expression.execute(ctx) is True:
                    continue
            except Exception as exc:  # failurePolicy Fail: an error refuses
                found.append(self._violation(doc, v.control, _error(exc), ()))
                continue
            found.append(self._violation(doc, v.control, _message(v, ctx), _offenders(v, ctx)))
        return Outcome(doc, tuple(found))

    def _violation(self, doc: Document, control: str, message: str,
                   containers: tuple[str, ...]) -> Violation:
        return Violation(doc.source, doc.line, doc.kind, doc.namespace, doc.name, control,
                         message, containers, self.action)


def _error(exc: Exception) -> str:
    what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
    return f"could not evaluate (the API server would refuse it: failurePolicy Fail): {what}"


def _message(v: _Validation, ctx: Any) -> str:
    try:
        out = v.message_expression.execute(ctx)
    except Exception:  # as in Kubernetes: fall back to the static message
        return v.message
    return out if isinstance(out, str) and out else v.message


def _offenders(v: _Validation, ctx: Any) -> tuple[str, ...]:
    if v.offenders is None:
        return ()
    try:
        names = v.offenders.execute(ctx)
    except Exception:  # detail only; the verdict stands
        return ()
    return tuple(str(n) for n in names) if isinstance(names, list) else ()
