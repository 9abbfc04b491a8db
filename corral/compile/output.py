"""The value a compiler returns, and its deterministic YAML serialisation. Pure.

A target returns ``Files``: relative path -> ``Manifest`` (one or more Kubernetes objects written
as YAML documents) or ``Text`` (written as is). Same policy, same bytes: keys keep the order the
compiler built them in, and nothing time- or host-dependent goes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Block style, no aliases, multi-line strings as literal blocks (readable CEL/Rego/Falco)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


@dataclass(frozen=True, slots=True)
class Manifest:
    objects: tuple[dict[str, Any], ...]

    def render(self) -> str:
        return "---\n".join(to_yaml(o) for o in self.objects)


@dataclass(frozen=True, slots=True)
class Text:
    content: str

    def render(self) -> str:
        return self.content if self.content.endswith("\n") else self.content + "\n"


Files = dict[str, Manifest | Text]


def manifest(*objects: dict[str, Any]) -> Manifest:
    return Manifest(tuple(objects))
