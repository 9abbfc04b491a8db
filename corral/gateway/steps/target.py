"""Step 2, parse target: request head -> (kind, host, port, path). 400 when it is not one.

An absolute URI's host decides, never its userinfo (``http://allowed@evil/`` goes to ``evil``),
and the Host header must name the same host and port (``host_mismatch`` otherwise).
"""

from __future__ import annotations

from corral.gateway.flow import Flow, Refusal
from corral.gateway.protocol.http import ProtocolError, RequestHead, Target, parse_target

MEMO_SIZE = 4096


class ParseTarget:
    """Parsing is pure in (method, target, Host headers): repeated targets hit a memo."""

    def __init__(self) -> None:
        self._memo: dict[tuple[bool, bytes, tuple[bytes, ...]], Target | Refusal] = {}

    def _parse(self, head: RequestHead) -> Target | Refusal:
        key = (head.method == "CONNECT", head.target, head.hosts)
        hit = self._memo.get(key)
        if hit is None:
            try:
                hit = parse_target(head)
            except ProtocolError as exc:
                hit = Refusal(exc.status, exc.reason, None, exc.message)
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = hit
        return hit

    def request(self, flow: Flow) -> Refusal | None:
        assert flow.head is not None
        target = self._parse(flow.head)
        if isinstance(target, Refusal):
            return target
        flow.target = target
        flow.kind = target.kind
        flow.host = target.host
        flow.port = target.port
        flow.path = target.path
        return None
