"""Run the rendered Gatekeeper templates with the real Rego engine (PyPI ``regopy``).

Reads the Rego and the parameters out of the ConstraintTemplate and Constraint objects
``corral render`` writes, builds each module once, and queries it per object with Gatekeeper's
input shape: ``{"review": {object, operation, subResource, kind, namespace}, "parameters": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

import regopy

from corral.compile.admission_rego import compile_gatekeeper
from corral.model.policy import Policy


class RegoError(AssertionError):
    pass


class RegoEngine:
    def __init__(self, policy: Policy) -> None:
        files = compile_gatekeeper(policy)
        templates = files["constraint-templates.yaml"].objects  # type: ignore[union-attr]
        constraints = files["constraints.yaml"].objects  # type: ignore[union-attr]
        self.modules: list[tuple[str, Any, Any, dict[str, Any]]] = []
        for tpl, con in zip(templates, constraints, strict=True):
            code = tpl["spec"]["targets"][0]["code"][0]
            assert code["engine"] == "Rego" and code["source"]["version"] == "v1"
            rego = code["source"]["rego"]
            package = rego.split("\n", 1)[0].removeprefix("package ").strip()
            interp = regopy.Interpreter()
            interp.add_module(f"{package}.rego", rego)
            bundle = interp.build(f"data.{package}.violation")
            control = package.removeprefix("corral.")
            self.modules.append((control, interp, bundle, con["spec"]["parameters"]))
            self._probe(control)

    def _probe(self, control: str) -> None:
        """A module that does not compile answers with an error, never with silence."""
        self.query(control, {"kind": "Pod", "spec": {"containers": []}})

    def query(self, control: str, obj: dict[str, Any], operation: str = "CREATE",
              sub_resource: str = "") -> list[str]:
        _, interp, bundle, params = next(m for m in self.modules if m[0] == control)
        review = {"object": obj, "operation": operation, "subResource": sub_resource,
                  "kind": {"kind": obj.get("kind", "")},
                  "namespace": obj.get("metadata", {}).get("namespace", "")}
        # JSON text: regopy's Input(dict) mis-escapes backslashes (our regexes have them)
        interp.set_input_term(json.dumps({"review": review, "parameters": params}))
        out = interp.query_bundle(bundle)
        if not out.ok():
            raise RegoError(f"{control}: Rego failed: {out}")
        data = json.loads(str(out))
        violations = data["expressions"][0] if data.get("expressions") else []
        return sorted(v["msg"] for v in violations)

    def violations(self, obj: dict[str, Any], operation: str = "CREATE",
                   sub_resource: str = "") -> dict[str, list[str]]:
        """control -> messages, for every control with at least one violation."""
        out = {}
        for control, *_ in self.modules:
            msgs = self.query(control, obj, operation, sub_resource)
            if msgs:
                out[control] = msgs
        return out
