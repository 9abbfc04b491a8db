"""Step 2, parse target: request head -> (kind, host, port, path). 400 when it is not one.

An absolute URI's host decides, never its userinfo (``http://allowed@evil/`` goes to ``evil``),
and the Host header must name the same host and port (``host_mismatch`` otherwise).
"""

from __future__ import annotations

from corral.gateway.flow import Flow, Refusal
from corral.gateway.protocol.http import ProtocolError, parse_target


class ParseTarget:
    async def request(self, flow: Flow) -> Refusal | None:
        assert flow.head is not None
        try:
            target = parse_target(flow.head)
        except ProtocolError as exc:
            return Refusal(exc.status, exc.reason, None, exc.message)
        flow.target = target
        flow.kind = target.kind
        flow.host = target.host
        flow.port = target.port
        flow.path = target.path
        return None
