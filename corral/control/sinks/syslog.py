"""Syslog sink: RFC 5424 messages over UDP (one datagram each) or TCP (RFC 6587 octet counting).

``<PRI>1 TIMESTAMP HOSTNAME corral - MSGID [corral@32473 ...] JSON``; PRI is facility local0
with the item's severity mapped onto syslog's scale (Falco uses the same eight words).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import orjson

from corral.control.sinks.base import SinkError

FACILITY_LOCAL0 = 16
_SYSLOG_SEVERITY = {"emergency": 0, "alert": 1, "critical": 2, "error": 3, "warning": 4,
                    "notice": 5, "informational": 6, "debug": 7}
_UDP_MAX = 8192  # keep datagrams well under common receiver limits
SD_ID = "corral@32473"  # 32473: the private enterprise number reserved for documentation


def format_5424(item: dict[str, Any], hostname: str) -> bytes:
    """One RFC 5424 message for a notice or an event."""
    incident = item.get("incident") if isinstance(item.get("incident"), dict) else None
    body = incident or item
    severity = str(body.get("severity", "notice"))
    pri = FACILITY_LOCAL0 * 8 + _SYSLOG_SEVERITY.get(severity, 5)
    ts = float(item.get("time") or time.time())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"
    msgid = "incident" if incident else "event"
    params = {"key": item.get("key"), "severity": severity, "agent": body.get("agent"),
              "rule": body.get("rule"), "kind": item.get("kind")}
    sd = "".join(f' {k}="{_sd_escape(str(v))}"' for k, v in params.items() if v is not None)
    head = f"<{pri}>1 {stamp} {hostname} corral - {msgid} [{SD_ID}{sd}] "
    return head.encode() + orjson.dumps(item)


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


class SyslogSink:
    def __init__(self, name: str, host: str, port: int, *, transport: str, timeout: float,
                 hostname: str | None = None) -> None:
        self.name = name
        self._addr = (host, port)
        self._tcp = transport == "tcp"
        self._timeout = timeout
        self._hostname = hostname or socket.gethostname() or "-"
        self._writer: asyncio.StreamWriter | None = None
        self._udp: asyncio.DatagramTransport | None = None

    async def emit(self, batch: list[dict[str, Any]]) -> None:
        msgs = [format_5424(item, self._hostname) for item in batch]
        try:
            await asyncio.wait_for(self._send(msgs), self._timeout)
        except (OSError, TimeoutError) as exc:
            await self.aclose()
            raise SinkError(f"{self.name}: syslog {type(exc).__name__}: {exc}") from None

    async def _send(self, msgs: list[bytes]) -> None:
        if self._tcp:
            writer = await self._tcp_writer()
            writer.write(b"".join(b"%d %s" % (len(m), m) for m in msgs))
            await writer.drain()
            return
        udp = await self._udp_transport()
        for m in msgs:
            udp.sendto(m[:_UDP_MAX])

    async def _tcp_writer(self) -> asyncio.StreamWriter:
        if self._writer is None or self._writer.is_closing():
            _, self._writer = await asyncio.open_connection(*self._addr)
        return self._writer

    async def _udp_transport(self) -> asyncio.DatagramTransport:
        if self._udp is None or self._udp.is_closing():
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=self._addr)
        return self._udp

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
