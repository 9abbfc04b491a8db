"""corral: keep AI-agent workloads inside declared boundaries.

The public surface is small on purpose: load a policy, decide an egress request.
Everything else is reached through the ``corral`` command or its layer packages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.decide.egress import Decision, EgressRequest, decide
    from corral.model.errors import PolicyError, Problem
    from corral.model.load import load_policy
    from corral.model.policy import Policy

__version__ = "0.1.0"

# Imported on first use, so `corral <verb>` loads only what that verb needs.
_LAZY = {
    "Decision": "corral.decide.egress",
    "EgressRequest": "corral.decide.egress",
    "decide": "corral.decide.egress",
    "PolicyError": "corral.model.errors",
    "Problem": "corral.model.errors",
    "load_policy": "corral.model.load",
    "Policy": "corral.model.policy",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'corral' has no attribute {name!r}")

__all__ = [
    "Decision",
    "EgressRequest",
    "Policy",
    "PolicyError",
    "Problem",
    "__version__",
    "decide",
    "load_policy",
]
