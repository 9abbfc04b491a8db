"""The gateway's DNS resolver: A and AAAA through dnspython, cached for the answer's TTL.

Sits between the decide step and the SSRF guard: the gateway resolves each name once here, vets
every address it got, and dials one of those same addresses (no second lookup, so a rebinding
answer cannot slip in between check and dial). Concurrent lookups of one name share one query.
The nameserver is ``--resolver IP[:PORT]`` or the system's /etc/resolv.conf. Failures are cached
for ``negative_ttl`` seconds so a loop over a bad name does not hammer DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from corral.decide.addresses import IPAddress

Clock = Callable[[], float]
MAX_CACHE = 10_000


class ResolveError(Exception):
    """The name did not resolve to any address (NXDOMAIN, no A/AAAA, timeout)."""


@dataclass(frozen=True, slots=True)
class Resolved:
    addresses: tuple[IPAddress, ...]
    expires: float
    error: str | None = None


def parse_nameserver(text: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT`` or ``[V6]:PORT`` -> (ip, port); ValueError on anything else."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


class Resolver:
    """Caching A/AAAA resolver. One per gateway process."""

    def __init__(self, nameserver: tuple[str, int] | None = None, *, timeout: float = 5.0,
                 negative_ttl: float = 5.0, min_ttl: float = 0.0,
                 clock: Clock = time.monotonic,
                 observe: Callable[[float], None] | None = None) -> None:
        self._dns = dns.asyncresolver.Resolver(configure=nameserver is None)
        if nameserver is not None:
            self._dns.nameservers = [nameserver[0]]
            self._dns.port = nameserver[1]
        self._dns.cache = None
        self._timeout = timeout
        self._negative_ttl = negative_ttl
        self._min_ttl = min_ttl
        self._clock = clock
        self._observe = observe
        self._cache: dict[str, Resolved] = {}
        self._inflight: dict[str, asyncio.Task[Resolved]] = {}
        self.queries = 0  # names actually sent to DNS (tests and metrics read it)

    def cached(self, host: str) -> tuple[IPAddress, ...] | None:
        """The cached answer if still fresh (``ResolveError`` for a cached failure), else None."""
        hit = self._cache.get(host)
        if hit is None or hit.expires <= self._clock():
            return None
        if hit.error is not None:
            raise ResolveError(hit.error)
        return hit.addresses

    async def resolve(self, host: str) -> tuple[IPAddress, ...]:
        """Addresses of ``host`` (normalised, absolute); ``ResolveError`` when none."""
        hit = self._cache.get(host)
        if hit is None or hit.expires <= self._clock():
            hit = await self._lookup_shared(host)
        if hit.error is not None:
            raise ResolveError(hit.error)
        return hit.addresses

    async def _lookup_shared(self, host: str) -> Resolved:
        """One lookup per name at a time, in its own task: a requester that goes away (its
        connection closed) cancels only its wait, never the lookup others are waiting for."""
        task = self._inflight.get(host)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._lookup_and_cache(host),
                                                          name=f"dns:{host}")
            self._inflight[host] = task
            task.add_done_callback(lambda _t: self._inflight.pop(host, None))
        return await asyncio.shield(task)

    async def _lookup_and_cache(self, host: str) -> Resolved:
        result = await self._lookup(host)
        if len(self._cache) >= MAX_CACHE:
            self._cache.clear()
        self._cache[host] = result
        return result

    async def _lookup(self, host: str) -> Resolved:
        self.queries += 1
        start = time.perf_counter()
        answers = await asyncio.gather(self._query(host, dns.rdatatype.A),
                                       self._query(host, dns.rdatatype.AAAA))
        if self._observe is not None:
            self._observe(time.perf_counter() - start)
        addrs: list[IPAddress] = []
        ttls: list[float] = []
        errors: list[str] = []
        for found in answers:
            if isinstance(found, str):
                errors.append(found)
                continue
            ttls.append(found[1])
            addrs.extend(found[0])
        now = self._clock()
        if not addrs:
            return Resolved((), now + self._negative_ttl,
                            "; ".join(sorted(set(errors))) or f"{host} has no A or AAAA record")
        return Resolved(tuple(addrs), now + max(self._min_ttl, min(ttls)))

    async def _query(self, host: str,
                     rdtype: dns.rdatatype.RdataType) -> tuple[list[IPAddress], float] | str:
        try:
            answer = await self._dns.resolve(host + ".", rdtype, raise_on_no_answer=False,
                                             lifetime=self._timeout, search=False)
        except dns.resolver.NXDOMAIN:
            return f"{host} does not exist (NXDOMAIN)"
        except dns.resolver.NoNameservers as exc:
            return f"no nameserver answered for {host}: {exc}"
        except dns.exception.Timeout:
            return f"DNS lookup of {host} timed out"
        except dns.exception.DNSException as exc:
            return f"DNS lookup of {host} failed: {exc}"
        if answer.rrset is None:
            return [], float("inf")
        addrs = [ipaddress.ip_address(r.address) for r in answer.rrset]
        return addrs, float(answer.rrset.ttl)
