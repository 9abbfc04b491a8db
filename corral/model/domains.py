"""Domain patterns and host normalisation: the exact semantics of DESIGN.md.

Policy entries are parsed here into ``DomainPattern`` values when the policy loads; the gateway
normalises each request's host with the same ``normalise_host`` so that both sides of a match
went through one function. Pure: no I/O.

- normalise: lower-case, strip one trailing dot, IDNA 2008 (UTS #46) to its A-label form;
- ``example.com`` matches only that name; ``*.example.com`` matches every name below it, at any
  depth, never the apex; nothing else is a pattern;
- ``*``, and wildcards over a public suffix (``*.com``, ``*.co.uk``, ``*.github.io``), are refused;
- an entry may name one port (``host:8443``); without one, CONNECT means 443 and plain HTTP 80;
- an allow entry may instead name an address or CIDR *with its port* (``10.96.0.1:443``,
  ``10.0.0.0/8:5432``, ``[fd00::/8]:443``): an ``AddressPattern``, the only grant that lets an
  agent reach an IP-literal destination.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from functools import lru_cache

import idna
from publicsuffixlist import PublicSuffixList

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
MAX_NAME = 253


class DomainError(ValueError):
    """A host or pattern that is not a usable DNS name; the message says what was expected."""


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def is_public_suffix(name: str) -> bool:
    """True when ``name`` (A-label form) is itself a public suffix, ICANN or private section."""
    return _psl().is_public(name)


def looks_like_ip(host: str) -> bool:
    """True for any spelling a resolver or URL parser may read as an IP address.

    Catches dotted quads, ``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1`` and IPv6 in or out
    of brackets, and, like the WHATWG URL parser, any name whose last label is numeric.
    """
    h = host.strip("[]").rstrip(".").lower()
    if not h:
        return False
    if ":" in h:
        try:
            ipaddress.IPv6Address(h.split("%", 1)[0])
        except ValueError:
            return False
        return True
    try:
        socket.inet_aton(h)
    except (OSError, ValueError):  # ValueError: embedded NUL
        return bool(_NUMERIC_LABEL.match(h.rsplit(".", 1)[-1]))
    return True


def parse_ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host spells in any of the forms ``looks_like_ip`` accepts, else None."""
    h = host.strip("[]").rstrip(".").lower()
    if ":" in h:
        try:
            return ipaddress.IPv6Address(h.split("%", 1)[0])
        except ValueError:
            return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(h))
    except (OSError, ValueError):  # ValueError: embedded NUL
        return None


def normalise_host(host: str) -> str:
    """Canonical A-label form of a DNS name, or ``DomainError`` saying why it is not one."""
    name = host.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name or name.endswith("."):
        raise DomainError(f"{host!r} is not a DNS name (empty label)")
    if name.isascii():
        name = name.lower()
    else:
        try:
            name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise DomainError(f"{host!r} is not a valid internationalised name: {exc}") from None
    if len(name) > MAX_NAME:
        raise DomainError(f"{host!r} is longer than {MAX_NAME} characters")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise DomainError(
                f"{host!r} has an invalid label {label!r}: expected letters, digits and inner "
                "hyphens, 1-63 characters"
            )
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError as exc:
                raise DomainError(f"{host!r} has an invalid punycode label: {exc}") from None
    return name


@dataclass(frozen=True, slots=True, order=True)
class DomainPattern:
    """A parsed allow/deny entry. ``name`` is the A-label form without ``*.``."""

    name: str
    wildcard: bool = False
    port: int | None = None

    def __str__(self) -> str:
        text = f"*.{self.name}" if self.wildcard else self.name
        return f"{text}:{self.port}" if self.port is not None else text

    def matches_name(self, host: str) -> bool:
        """Match a host already passed through ``normalise_host``."""
        if self.wildcard:
            return host.endswith("." + self.name)
        return host == self.name

    def matches_port(self, port: int, default_port: int) -> bool:
        return port == (self.port if self.port is not None else default_port)


def _split_port(text: str) -> tuple[str, int | None]:
    if text.count(":") != 1:
        if ":" in text:
            raise DomainError(
                f"{text!r}: an IPv6 allow entry is written in brackets with its port, "
                "like [2001:db8::1]:443"
            )
        return text, None
    host, _, port_text = text.partition(":")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise DomainError(f"{text!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def parse_pattern(text: str, *, for_deny: bool = False) -> DomainPattern:
    """Parse one allow/deny entry; ``DomainError`` says what was expected.

    A wildcard over a public suffix is refused in an allowlist (it opens names anyone can
    register) but accepted in a denylist, where ``*.ngrok.io`` is exactly what is meant.
    """
    if not isinstance(text, str):
        raise DomainError(f"expected a domain pattern string, got {type(text).__name__}")
    raw = text.strip()
    if raw in ("*", "*.", "**") or raw.startswith("*:"):
        raise DomainError(f"{text!r} would allow every name; list the domains agents need")
    host, port = _split_port(raw)
    wildcard = host.startswith("*.")
    body = host[2:] if wildcard else host
    if "*" in body:
        raise DomainError(
            f"{text!r}: '*' is allowed only as the whole first label ('*.example.com')"
        )
    if "/" in body or "@" in body:
        raise DomainError(f"{text!r}: expected a host name, not a URL")
    if looks_like_ip(body):
        raise DomainError(
            f"{text!r}: an IP address is allowed only as an allow entry with its port "
            "(10.96.0.1:443 or 10.96.0.0/12:443); deny lists hold names"
        )
    name = normalise_host(body)
    if wildcard and not for_deny and (is_public_suffix(name) or "." not in name):
        raise DomainError(
            f"{text!r} is a wildcard over the public suffix {name!r}: it would match "
            "names anyone can register; list the registrable domains instead"
        )
    return DomainPattern(name=name, wildcard=wildcard, port=port)


IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AddressPattern:
    """An allow entry naming an address or CIDR and the one port it opens."""

    net: IPNet
    port: int

    def __str__(self) -> str:
        one = self.net.num_addresses == 1
        text = str(self.net.network_address) if one else str(self.net)
        return f"[{text}]:{self.port}" if self.net.version == 6 else f"{text}:{self.port}"

    def matches(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """The address lies in this entry (an IPv6 form embedding IPv4 is compared by the
        IPv4 it carries: ``[::ffff:10.96.0.1]`` is ``10.96.0.1``)."""
        if ip.version == self.net.version and ip in self.net:
            return True
        if isinstance(ip, ipaddress.IPv6Address) and self.net.version == 4:
            inner = ip.ipv4_mapped
            return inner is not None and inner in self.net
        return False


def is_address_entry(text: str) -> bool:
    """Does this allow entry name an address or CIDR (rather than a DNS name)?"""
    raw = text.strip()
    if raw.startswith("[") or "/" in raw or raw.count(":") > 1:
        return True
    return looks_like_ip(raw.partition(":")[0])


def parse_address_pattern(text: str) -> AddressPattern:
    """``10.96.0.1:443``, ``10.96.0.0/12:443``, ``[fd00::1]:443``; the port is required."""
    raw = text.strip()
    if raw.startswith("["):
        addr, sep, port_text = raw[1:].partition("]:")
    else:
        addr, sep, port_text = raw.rpartition(":") if raw.count(":") == 1 else (raw, "", "")
    if not sep:
        raise DomainError(
            f"{text!r}: an address entry must name its port, like 10.96.0.1:443 or "
            "[2001:db8::1]:443 (an IP address is a destination of its own)"
        )
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise DomainError(f"{text!r}: port must be a number from 1 to 65535")
    try:
        net = ipaddress.ip_network(addr, strict=True)
    except ValueError as exc:
        raise DomainError(
            f"{text!r}: expected an address or CIDR in canonical form ({exc})"
        ) from None
    return AddressPattern(net, int(port_text))


class PatternSet:
    """Patterns indexed for O(labels) matching; returns the first matching pattern(s)."""

    __slots__ = ("_exact", "_wild")

    def __init__(self, patterns: tuple[DomainPattern, ...] | list[DomainPattern]) -> None:
        self._exact: dict[str, list[DomainPattern]] = {}
        self._wild: dict[str, list[DomainPattern]] = {}
        for p in patterns:
            (self._wild if p.wildcard else self._exact).setdefault(p.name, []).append(p)

    def candidates(self, host: str) -> list[DomainPattern]:
        """Every pattern whose name part matches ``host`` (normalised), exact ones first."""
        found = list(self._exact.get(host, ()))
        rest = host
        while "." in rest:
            rest = rest.split(".", 1)[1]
            found.extend(self._wild.get(rest, ()))
        return found
