"""Kubernetes-style byte quantities (``50Mi``, ``1G``, ``1500``) for quotas. Pure."""

from __future__ import annotations

import re

_SUFFIX = {
    "": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$")


def parse_bytes(value: object) -> int:
    """Bytes in ``value``; ``ValueError`` names the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a byte quantity like 50Mi, 1G or 1048576")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a byte quantity cannot be negative")
        return value
    if isinstance(value, str):
        m = _QUANTITY.match(value.strip())
        if m:
            return int(float(m.group(1)) * _SUFFIX[m.group(2) or ""])
    raise ValueError(f"expected a byte quantity like 50Mi, 1G or 1048576, got {value!r}")


def format_bytes(n: int) -> str:
    """Shortest exact binary-suffixed form (``52428800`` -> ``50Mi``)."""
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = _SUFFIX[suffix]
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)
