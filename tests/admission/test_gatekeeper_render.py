"""Rendered Gatekeeper objects against Gatekeeper's published ConstraintTemplate layout
(templates.gatekeeper.sh/v1: spec.crd.spec.names/validation, spec.targets[].code[].engine/source),
written down here as a strict JSON Schema of the fields corral uses. No cluster runs here."""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs; dev dependency via kubernetes-validate
import pytest

from corral.compile.admission_rego import compile_gatekeeper
from tests.admission.helpers import NS, make_policy

_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": list(props) if required is None else required}


_META = _obj({"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
              "labels": {"type": "object"}}, ["name"])
TEMPLATE = _obj({
    "apiVersion": {"const": "templates.gatekeeper.sh/v1"},
    "kind": {"const": "ConstraintTemplate"},
    "metadata": _META,
    "spec": _obj({
        "crd": _obj({"spec": _obj({
            "names": _obj({"kind": _STR}),
            "validation": _obj({"openAPIV3Schema": {"type": "object",
                                                    "required": ["type"]}}),
        })}),
        "targets": {"type": "array", "minItems": 1, "items": _obj({
            "target": {"const": "admission.k8s.gatekeeper.sh"},
            "code": {"type": "array", "minItems": 1, "items": _obj({
                "engine": {"const": "Rego"},
                "source": _obj({"version": {"const": "v1"}, "rego": _STR}),
            })},
        })},
    }),
})
CONSTRAINT = _obj({
    "apiVersion": {"const": "constraints.gatekeeper.sh/v1beta1"},
    "kind": _STR,
    "metadata": _META,
    "spec": _obj({
        "enforcementAction": {"enum": ["deny", "dryrun", "warn"]},
        "match": _obj({"kinds": {"type": "array", "items": _obj({"apiGroups": _STRS,
                                                                 "kinds": _STRS})},
                       "namespaces": _STRS}),
        "parameters": {"type": "object"},
    }),
})


def test_objects_follow_gatekeeper_layout() -> None:
    files = compile_gatekeeper(make_policy())
    templates = files["constraint-templates.yaml"].objects  # type: ignore[union-attr]
    constraints = files["constraints.yaml"].objects  # type: ignore[union-attr]
    assert len(templates) == len(constraints) == 13
    for tpl, con in zip(templates, constraints, strict=True):
        jsonschema.validate(tpl, TEMPLATE)
        jsonschema.validate(con, CONSTRAINT)
        kind = tpl["spec"]["crd"]["spec"]["names"]["kind"]
        assert tpl["metadata"]["name"] == kind.lower()  # Gatekeeper requires this
        assert con["kind"] == kind
        assert con["spec"]["match"]["namespaces"] == [NS]
        rego = tpl["spec"]["targets"][0]["code"][0]["source"]["rego"]
        assert "violation contains" in rego and "violation[" not in rego  # v1, not v0
        jsonschema.validate(con["spec"]["parameters"],
                            tpl["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(templates[0] | {"spec": {"targets": []}}, TEMPLATE)


@pytest.mark.parametrize(("action", "expected"),
                         [("deny", "deny"), ("warn", "warn"), ("audit", "dryrun")])
def test_enforcement_action(action: str, expected: str) -> None:
    files = compile_gatekeeper(make_policy({"action": action}))
    cons = files["constraints.yaml"].objects  # type: ignore[union-attr]
    assert {c["spec"]["enforcementAction"] for c in cons} == {expected}


def test_not_selected() -> None:
    assert compile_gatekeeper(make_policy({"engines": ["cel"]})) == {}
