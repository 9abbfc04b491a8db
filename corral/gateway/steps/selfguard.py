"""Step 5b, self guard: the gateway never dials itself nor the control plane, whatever the policy.

Runs after resolution on the addresses about to be dialled (``flow.addrs``): an address of this
host on one of the gateway's own ports (an agent listener or the admin port) would let an agent
reach the admin API through its listener, or enter another agent's listener and be logged as
that agent; an address of the control plane (any port) would let it reach the quarantine
machinery. Such addresses are dropped; when none is left -> ``403 forbidden_address`` with rule
``self:gateway`` or ``self:control_plane``, in learn mode too. A policy can never open them:
``resolve_into`` or an address allow entry covering loopback or the pod network changes nothing.

"This host" is every local address when the listeners bind a wildcard (0.0.0.0, ::): an
address is local when the kernel lets a socket bind it (cached); loopback and the unspecified
address always are.
"""

from __future__ import annotations

import ipaddress
import socket

from corral.decide import reasons
from corral.gateway.flow import Flow, Refusal

MEMO_SIZE = 4096


def is_local(addr: str) -> bool:
    """Does ``addr`` belong to this host (a connection to it would stay on this host)?"""
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:
        return True
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((str(ip), 0))
        except OSError:
            return False
    return True


class OwnAddresses:
    """What the gateway must never dial: its own ports on this host, the control plane.

    ``ports`` is updated by the runtime whenever listeners open or close; ``control`` holds the
    control plane's addresses (resolved at start) and ``control_names`` its host names.
    """

    def __init__(self) -> None:
        self.ports: frozenset[int] = frozenset()
        self.control: frozenset[str] = frozenset()
        self.control_names: frozenset[str] = frozenset()
        self._local: dict[str, bool] = {}

    def _is_local(self, addr: str) -> bool:
        hit = self._local.get(addr)
        if hit is None:
            if len(self._local) >= MEMO_SIZE:
                self._local.clear()
            hit = self._local[addr] = is_local(addr)
        return hit

    def refuses(self, addr: str, port: int) -> str | None:
        """``gateway`` or ``control_plane`` when dialling ``addr:port`` is forbidden; else None."""
        if addr in self.control:
            return "control_plane"
        if port in self.ports and self._is_local(addr):
            return "gateway"
        return None


class SelfGuard:
    def __init__(self, own: OwnAddresses) -> None:
        self._own = own

    def request(self, flow: Flow) -> Refusal | None:
        own = self._own
        if flow.host in own.control_names:
            return self._refuse(flow, "control_plane")
        if not flow.addrs:
            return None
        kept = tuple(a for a in flow.addrs if own.refuses(a, flow.port) is None)
        if kept:
            flow.addrs = kept
            return None
        flow.resolved = flow.addrs[0]
        return self._refuse(flow, own.refuses(flow.addrs[0], flow.port) or "gateway")

    @staticmethod
    def _refuse(flow: Flow, what: str) -> Refusal:
        return Refusal(403, reasons.FORBIDDEN_ADDRESS, f"self:{what}",
                       f"{flow.host}:{flow.port} is the {what.replace('_', ' ')} itself")
