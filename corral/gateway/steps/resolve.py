"""Step 5, resolve + SSRF guard: resolve the name once, vet every address, keep the vetted ones.

The server dials only ``flow.addrs``, the addresses vetted here, so a DNS answer that changes
between check and dial (rebinding) cannot reach an internal address. A name whose addresses are
all refused is denied with ``forbidden_address`` in learn mode too (a built-in guard).
"""

from __future__ import annotations

from corral.decide import reasons
from corral.decide.addresses import vet
from corral.gateway.flow import Flow, Refusal
from corral.gateway.resolver import ResolveError, Resolver


class ResolveGuard:
    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def request(self, flow: Flow) -> Refusal | None:
        assert flow.rules is not None
        if flow.addrs:  # an IP literal: decide already vetted it
            return None
        try:
            found = await self._resolver.resolve(flow.host)
        except ResolveError as exc:
            return Refusal(502, reasons.RESOLVE_FAILED, None, str(exc), deny=False)
        allowed = flow.rules.allow_cidrs
        vetted = tuple(a for a in found if vet(a, allowed) is None)
        if not vetted:
            category = vet(found[0], allowed)
            flow.resolved = str(found[0])
            return Refusal(403, reasons.FORBIDDEN_ADDRESS, f"ssrf:{category}",
                           f"{flow.host} resolves to {found[0]}")
        flow.addrs = vetted
        return None
