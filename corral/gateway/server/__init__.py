"""The only socket code of the gateway: listeners, client connections, upstream connections.

Modules: ``listeners`` (``Gateway``), ``client`` (``ClientConnection``), ``upstream`` (the
destination side and its pool), ``admin_port`` (``AdminServer``).

One ``ClientConnection`` (an asyncio Protocol, no streams: small per-connection state for
10,000 idle tunnels) per accepted socket. It feeds bytes to the sans-io ``RequestReader``, runs
the ordered steps (``steps.Pipeline``) for each request head, dials the address the resolve step
vetted, then relays: CONNECT as a raw tunnel after the SNI check, plain HTTP as one upstream
connection per request taken from a small pool of idle persistent connections (keyed by agent,
host and the vetted address, so nothing is shared across agents or names) with the response
re-framed for client keep-alive. A ``Gateway`` owns the listeners (one per agent port), a sweeper
that enforces header/idle timeouts on a coarse tick, and drain. Any error inside one connection
ends that connection only. ``AdminServer`` serves the admin routes of ``admin`` on its port.
"""

from __future__ import annotations

from corral.gateway.server.admin_port import AdminServer
from corral.gateway.server.client import ClientConnection
from corral.gateway.server.listeners import Gateway
from corral.gateway.server.upstream import Upstream, UpstreamPool

__all__ = ["AdminServer", "ClientConnection", "Gateway", "Upstream", "UpstreamPool"]
