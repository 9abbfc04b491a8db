"""``corral schema``: the JSON Schema of corral.yaml, for editors (yaml-language-server) and CI."""

from __future__ import annotations

import argparse
from typing import Any

from corral.cli import _common
from corral.model.policy import Policy


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "schema", help="print the JSON Schema of the policy file",
        description="Print the JSON Schema of corral.yaml. Point your editor at it with "
                    "'# yaml-language-server: $schema=corral.schema.json'. Domain patterns, "
                    "registry prefixes and CIDRs are checked further when the policy loads.")
    p.add_argument("-o", "--output", choices=("json", "yaml"), default="json",
                   help="output format (default: json)")
    p.set_defaults(run=run)


def policy_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "corral policy (corral.dev/v1alpha1)"
    return schema


def run(args: argparse.Namespace) -> int:
    _common.emit(policy_schema(), args.output)
    return _common.EXIT_OK
