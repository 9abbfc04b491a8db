"""``spec.admission``: which admission controls apply to the agents' namespace, and how.

Every control is on by default except digest pinning; each can be switched off with ``false`` or
tuned with its own fields. Approved registries come from ``spec.registries`` (one list for the
whole policy). The compilers in ``corral.compile.admission_*`` and ``kyverno`` read these values;
``corral check`` evaluates what they compile. Pure; must not import ``policy.py`` (it imports us).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from corral.model.policy_base import Strict

Engine = Literal["cel", "gatekeeper", "kyverno"]
Action = Literal["deny", "warn", "audit"]
SeccompType = Literal["RuntimeDefault", "Localhost"]
ResourceName = Literal["cpu", "memory"]

_CAPABILITY = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_EXEMPT = re.compile(r"^(?:[^\s*]+\*?|\*)$")
_PSS_VERSION = re.compile(r"^v1\.(0|[1-9][0-9]?)$")


def _toggle(value: object) -> object:
    """``false`` / ``true`` are shorthand for ``{enabled: false}`` / ``{enabled: true}``."""
    return {"enabled": value} if isinstance(value, bool) else value


def _capability(value: object) -> str:
    text = str(value).upper().removeprefix("CAP_") if isinstance(value, str) else ""
    if not _CAPABILITY.match(text) or text == "ALL":
        raise ValueError(
            f"expected a Linux capability name such as NET_BIND_SERVICE, got {value!r}"
        )
    return text


def _tag(value: object) -> str:
    if not isinstance(value, str) or not _TAG.match(value):
        raise ValueError(f"expected an image tag such as latest, got {value!r}")
    return value


def _exempt(value: object) -> str:
    if not isinstance(value, str) or not _EXEMPT.match(value):
        raise ValueError(
            "expected an exact image reference, or a prefix ending in '*' "
            f"(e.g. registry.example.com/debug/*), got {value!r}"
        )
    return value


def _pss_version(value: object) -> str:
    if not isinstance(value, str) or not (value == "latest" or _PSS_VERSION.match(value)):
        raise ValueError(f"expected a Pod Security Standards version such as v1.33 or latest, "
                         f"got {value!r}")
    return value


Capability = Annotated[str, BeforeValidator(_capability)]
Tag = Annotated[str, BeforeValidator(_tag)]
ExemptImage = Annotated[str, BeforeValidator(_exempt)]


class Control(Strict):
    """A control that is on unless ``enabled: false``."""

    enabled: bool = True


class ContainerControl(Control):
    """A per-container control; ``exempt_images`` (exact, or prefix ending in ``*``) skip it."""

    exempt_images: tuple[ExemptImage, ...] = ()


class OffControl(ContainerControl):
    enabled: bool = False


class Tags(ContainerControl):
    """No mutable tags: the listed tags are refused, and so is an image with no tag or digest."""

    disallowed: tuple[Tag, ...] = ("latest",)
    require: bool = True


class Capabilities(ContainerControl):
    allowed: tuple[Capability, ...] = ()
    require_drop_all: bool = True


class Seccomp(ContainerControl):
    profiles: tuple[SeccompType, ...] = Field(default=("RuntimeDefault", "Localhost"), min_length=1)


class Limits(ContainerControl):
    resources: tuple[ResourceName, ...] = Field(default=("cpu", "memory"), min_length=1)


Toggle = BeforeValidator(_toggle)
PssVersion = Annotated[str, BeforeValidator(_pss_version)]


class PodSecurity(Strict):
    """The Kubernetes Pod Security Standards at ``level``, as published for ``version``
    (``latest``: the newest version corral knows). Enforced in every engine, on top of the
    controls; the agents' Namespace gets the same level and version as PSA labels."""

    level: Literal["baseline", "restricted"]
    version: PssVersion = "latest"


class Controls(Strict):
    registries: Annotated[ContainerControl, Toggle] = ContainerControl()
    tags: Annotated[Tags, Toggle] = Tags()
    digest: Annotated[OffControl, Toggle] = OffControl()
    privileged: Annotated[ContainerControl, Toggle] = ContainerControl()
    privilege_escalation: Annotated[ContainerControl, Toggle] = ContainerControl()
    host_namespaces: Annotated[Control, Toggle] = Control()
    host_network: Annotated[Control, Toggle] = Control()
    host_path: Annotated[Control, Toggle] = Control()
    capabilities: Annotated[Capabilities, Toggle] = Capabilities()
    run_as_non_root: Annotated[ContainerControl, Toggle] = ContainerControl()
    seccomp: Annotated[Seccomp, Toggle] = Seccomp()
    read_only_root_filesystem: Annotated[ContainerControl, Toggle] = ContainerControl()
    automount_token: Annotated[Control, Toggle] = Control()
    limits: Annotated[Limits, Toggle] = Limits()

    def enabled(self) -> dict[str, Control]:
        """Control name -> settings, for every enabled control, in declaration order."""
        out: dict[str, Control] = {}
        for name in type(self).model_fields:
            value: Any = getattr(self, name)
            if value.enabled:
                out[name] = value
        return out


class Admission(Strict):
    """Admission policy for the agents' namespace, compiled into each engine listed."""

    engines: tuple[Engine, ...] = ("cel", "gatekeeper", "kyverno")
    action: Action = "deny"
    controls: Controls = Controls()
    pod_security: PodSecurity | None = None
