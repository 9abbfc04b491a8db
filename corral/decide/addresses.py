"""The SSRF guard's classifier: is this resolved address one the gateway may dial? Pure.

Refuses loopback, private, link-local (cloud metadata), CGNAT, unspecified, multicast, reserved,
benchmarking, documentation, and every IPv6 form that embeds a refused IPv4 address (mapped,
compatible, NAT64, 6to4, Teredo) unless the address lies in a range the agent lets its
allowed names resolve into.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from corral.model.ranges import SPECIAL_V4, SPECIAL_V6

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = tuple((ipaddress.IPv4Network(n), c) for n, c in SPECIAL_V4)
_V6 = tuple((ipaddress.IPv6Network(n), c) for n, c in SPECIAL_V6)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_6TO4 = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_V4_COMPAT = ipaddress.IPv6Network("::/96")


def embedded_ipv4(addr: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 transition form carries, with the form's name."""
    if addr.ipv4_mapped is not None:
        return "ipv4_mapped", addr.ipv4_mapped
    if addr in _NAT64 or addr in _NAT64_LOCAL:
        return "nat64", ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in _6TO4:
        return "6to4", ipaddress.IPv4Address((int(addr) >> 80) & 0xFFFFFFFF)
    if addr in _TEREDO:
        return "teredo", ipaddress.IPv4Address(~int(addr) & 0xFFFFFFFF)
    if addr in _V4_COMPAT and int(addr) > 1:
        return "ipv4_compatible", ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def classify(addr: IPAddress) -> str | None:
    """None when the address is publicly routable; otherwise its category (e.g. ``loopback``)."""
    if isinstance(addr, ipaddress.IPv4Address):
        return next((c for net, c in _V4 if addr in net), None)
    inner = embedded_ipv4(addr)
    if inner is not None:
        form, v4 = inner
        category = classify(v4)
        return f"{form}:{category}" if category else None
    found = next((c for net, c in _V6 if addr in net), None)
    if found is not None:
        return found
    return None if addr.is_global else "reserved"


def vet(addr: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """None when the gateway may dial ``addr``; else the refusal category.

    An explicitly allowed CIDR admits the address, and the IPv4 it embeds is checked too, so
    ``resolve_into: [10.0.0.0/8]`` also admits ``::ffff:10.1.2.3``.
    """
    category = classify(addr)
    if category is None:
        return None
    if any(addr in net for net in allowed if net.version == addr.version):
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        inner = embedded_ipv4(addr)
        if inner is not None and any(inner[1] in n for n in allowed if n.version == 4):
            return None
    return category
