"""Step 5, resolve + SSRF guard: resolve the name once, vet every address, keep the vetted ones.

The server dials only ``flow.addrs``, the addresses vetted here, so a DNS answer that changes
between check and dial (rebinding) cannot reach an internal address. A name whose addresses are
all refused is denied with ``forbidden_address`` in learn mode too (a built-in guard).
"""

from __future__ import annotations

from collections.abc import Awaitable

from corral.decide import reasons
from corral.decide.addresses import IPAddress, IPNetwork, vet
from corral.gateway.flow import Flow, Refusal
from corral.gateway.resolver import ResolveError, Resolver


class ResolveGuard:
    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._memo: dict[tuple[IPAddress, tuple[IPNetwork, ...]], str | None] = {}

    def request(self, flow: Flow) -> Refusal | Awaitable[Refusal | None] | None:
        if flow.addrs:  # an IP literal: decide already vetted it
            return None
        try:
            found = self._resolver.cached(flow.host)
        except ResolveError as exc:
            return Refusal(502, reasons.RESOLVE_FAILED, None, str(exc), deny=False)
        if found is None:
            return self._lookup(flow)
        return self._guard(flow, found)

    async def _lookup(self, flow: Flow) -> Refusal | None:
        try:
            found = await self._resolver.resolve(flow.host)
        except ResolveError as exc:
            return Refusal(502, reasons.RESOLVE_FAILED, None, str(exc), deny=False)
        return self._guard(flow, found)

    def _vet(self, addr: IPAddress, allowed: tuple[IPNetwork, ...]) -> str | None:
        key = (addr, allowed)
        if key in self._memo:
            return self._memo[key]
        if len(self._memo) > 4096:
            self._memo.clear()
        category = self._memo[key] = vet(addr, allowed)
        return category

    def _guard(self, flow: Flow, found: tuple[IPAddress, ...]) -> Refusal | None:
        assert flow.rules is not None
        allowed = flow.rules.allow_cidrs
        vetted = tuple(a for a in found if self._vet(a, allowed) is None)
        if not vetted:
            category = self._vet(found[0], allowed)
            flow.resolved = str(found[0])
            return Refusal(403, reasons.FORBIDDEN_ADDRESS, f"ssrf:{category}",
                           f"{flow.host} resolves to {found[0]}")
        flow.addrs = vetted
        return None
