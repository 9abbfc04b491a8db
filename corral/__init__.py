"""corral: keep AI-agent workloads inside declared boundaries.

The public surface is small on purpose: load a policy, decide an egress request.
Everything else is reached through the ``corral`` command or its layer packages.
"""

from corral.decide.egress import Decision, EgressRequest, decide
from corral.model.errors import PolicyError, Problem
from corral.model.load import load_policy
from corral.model.policy import Policy

__version__ = "0.1.0"

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
