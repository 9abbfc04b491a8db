"""TLS ClientHello server-name (SNI) extraction from the first bytes of a tunnel. Sans-io.

The gateway peeks at what the client sends after ``200 Connection established`` and compares the
SNI with the CONNECT host. Handshake messages may span several TLS records; they are reassembled
up to ``MAX_HELLO`` bytes. The result says whether more bytes are needed, which name was sent, or
that the bytes are not a TLS ClientHello at all (plain TCP tunnelled through CONNECT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_HELLO = 32 * 1024
# a fatal TLS alert record, access_denied (49): what a client refused at the SNI check reads
# instead of the server's hello, so its TLS library names the refusal rather than an EOF
ACCESS_DENIED_ALERT = b"\x15\x03\x03\x00\x02\x02\x31"
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_EXT_SERVER_NAME = 0x0000
_HOST_NAME = 0x00

Status = Literal["more", "sni", "no_sni", "not_tls"]


@dataclass(frozen=True, slots=True)
class Hello:
    status: Status
    name: str | None = None


MORE = Hello("more")
NOT_TLS = Hello("not_tls")
NO_SNI = Hello("no_sni")


def parse_client_hello(buf: bytes) -> Hello:  # noqa: PLR0911 (one return per outcome)
    """Inspect the bytes a client sent into a tunnel so far.

    Records are read in order until the ClientHello is complete; whatever follows it (0-RTT
    early data, more records) is not looked at.
    """
    hs = bytearray()
    pos = 0
    while True:
        if len(hs) >= 4:
            if hs[0] != _CLIENT_HELLO:
                return NOT_TLS
            total = 4 + int.from_bytes(hs[1:4])
            if total > MAX_HELLO:
                return NOT_TLS
            if len(hs) >= total:
                return _server_name(bytes(hs[4:total]))
        if pos >= len(buf):
            return MORE
        if buf[pos] != _HANDSHAKE or (pos + 1 < len(buf) and buf[pos + 1] != 3):
            return NOT_TLS
        if pos + 5 > len(buf):
            return MORE
        length = int.from_bytes(buf[pos + 3:pos + 5])
        if length == 0 or length > 16384 + 2048:
            return NOT_TLS
        if pos + 5 + length > len(buf):
            if hs or length >= 4:  # enough of this record may already be known
                partial = hs + buf[pos + 5:]
                if len(partial) >= 1 and partial[0] != _CLIENT_HELLO:
                    return NOT_TLS
            return MORE
        hs += buf[pos + 5:pos + 5 + length]
        pos += 5 + length


def _server_name(body: bytes) -> Hello:
    """SNI from a ClientHello body (after the 4-byte handshake header)."""
    try:
        pos = 2 + 32  # legacy_version, random
        pos += 1 + body[pos]  # session id
        pos += 2 + int.from_bytes(body[pos:pos + 2])  # cipher suites
        pos += 1 + body[pos]  # compression methods
        if pos == len(body):
            return NO_SNI  # no extensions at all
        end = pos + 2 + int.from_bytes(body[pos:pos + 2])
        pos += 2
        while pos + 4 <= end:
            ext, length = int.from_bytes(body[pos:pos + 2]), int.from_bytes(body[pos + 2:pos + 4])
            data = body[pos + 4:pos + 4 + length]
            if ext == _EXT_SERVER_NAME:
                return _host_name(data)
            pos += 4 + length
    except IndexError:
        return NOT_TLS
    return NO_SNI if end <= len(body) else NOT_TLS


def _host_name(data: bytes) -> Hello:
    pos = 2
    while pos + 3 <= len(data):
        kind, length = data[pos], int.from_bytes(data[pos + 1:pos + 3])
        name = data[pos + 3:pos + 3 + length]
        if kind == _HOST_NAME and len(name) == length and length:
            try:
                return Hello("sni", name.decode("ascii"))
            except UnicodeDecodeError:
                return NOT_TLS
        pos += 3 + length
    return NO_SNI
