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
        # (id of the answer, id of the CIDRs) -> (answer, CIDRs, vetted strings, refusal):
        # a cached answer is vetted once per rules object, not once per request.
        self._memo: dict[tuple[int, int], tuple[object, object, tuple[str, ...], str | None]] = {}

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

    def _vetted(self, found: tuple[IPAddress, ...],
                allowed: tuple[IPNetwork, ...]) -> tuple[tuple[str, ...], str | None]:
        """Dialable addresses of an answer, and the refusal category of its first address."""
        key = (id(found), id(allowed))
        hit = self._memo.get(key)
        if hit is not None and hit[0] is found and hit[1] is allowed:
            return hit[2], hit[3]
        vetted = tuple(str(a) for a in found if vet(a, allowed) is None)
        category = vet(found[0], allowed) if not vetted else None
        if len(self._memo) >= 4096:
            self._memo.clear()
        self._memo[key] = (found, allowed, vetted, category)
        return vetted, category

    def _guard(self, flow: Flow, found: tuple[IPAddress, ...]) -> Refusal | None:
        assert flow.rules is not None
        vetted, category = self._vetted(found, flow.rules.resolve_into)
        if not vetted:
            flow.resolved = str(found[0])
            return Refusal(403, reasons.FORBIDDEN_ADDRESS, f"ssrf:{category}",
                           f"{flow.host} resolves to {found[0]}")
        flow.addrs = vetted
        return None
