"""Step 6, SNI check: the TLS ClientHello inside a CONNECT tunnel must name the CONNECT host.

A cheap domain-fronting and tunnelling guard, per agent (``egress.sni_check``). Missing SNI or
non-TLS bytes -> ``sni_missing``; another name -> ``sni_mismatch``. A CONNECT to an IP literal
(allowed by CIDR) may omit SNI, as TLS clients do for addresses. An SNI of ``host:port`` with
the CONNECT port (sent by some Go clients such as ``hey``) is compared by its host part. In
learn mode the mismatch is logged as ``would_deny`` and the tunnel proceeds.
"""

from __future__ import annotations

from corral.decide import reasons
from corral.gateway.flow import Flow, Refusal
from corral.gateway.protocol.tls import MORE, Hello, parse_client_hello
from corral.model.domains import DomainError, looks_like_ip, normalise_host


class SniCheck:
    def hello(self, flow: Flow, data: bytes) -> Refusal | Hello | None:
        rules = flow.rules
        if rules is None or not rules.sni_check:
            return None
        seen = parse_client_hello(data)
        if seen.status == "more":
            return MORE
        if seen.status == "sni" and seen.name is not None:
            flow.sni = seen.name
            return self._compare(flow, seen.name)
        if seen.status == "no_sni" and looks_like_ip(flow.host):
            return None
        return self._refuse(flow, reasons.SNI_MISSING, "no TLS server name in the ClientHello")

    def _compare(self, flow: Flow, name: str) -> Refusal | None:
        if name == flow.host:  # the common case: already in normal form
            return None
        host, sep, port = name.rpartition(":")
        if sep and port == str(flow.port):
            name = host  # some clients (hey, old Go) send "host:port"; the name still decides
        try:
            same = normalise_host(name) == flow.host
        except DomainError:
            same = False
        if same:
            return None
        return self._refuse(flow, reasons.SNI_MISMATCH,
                            f"TLS server name {name!r} is not the CONNECT host")

    def _refuse(self, flow: Flow, reason: str, detail: str) -> Refusal | None:
        assert flow.rules is not None
        if flow.rules.mode == "learn":
            if flow.decision == "allow":
                flow.decision = "would_deny"
                flow.reason = reason
            return None
        return Refusal(403, reason, "sni_check", detail)
