"""Group the review's rows so one attack reads as one row, not dozens.

Sits between ``build.py`` (which finds new and denied destinations) and the report. Per agent:
raw-IP destinations of one /24 (IPv4) or /48 (IPv6) on one day become one ``<network>`` row;
many hosts under one registrable domain become one ``*.<domain>`` row (at ``group_min`` hosts
when one looks encoded, else at four times that). Rows are then ranked by risk, then bytes.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

from corral.learn.report import DeniedDestination, NewDestination
from corral.learn.risk import Flag, registrable, risk_score
from corral.model.domains import parse_ip_literal

Row = TypeVar("Row", NewDestination, DeniedDestination)
GroupKey = tuple[str, str, int, str]  # agent, shown name, port, day ("" for domain groups)


def network_of(host: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) of an IP literal, else None."""
    ip = parse_ip_literal(host)
    if ip is None:
        return None
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 48}", strict=False))


def _key(agent: str, host: str, port: int, when: str) -> GroupKey:
    net = network_of(host)
    if net is not None:
        return agent, net, port, when[:10]
    return agent, f"*.{registrable(host)}", port, ""


def _forms(key: GroupKey, hosts: Sequence[str], flags: Sequence[Flag], group_min: int) -> bool:
    if key[3]:  # a network on one day
        return len(hosts) >= 2
    if key[1][2:] in hosts:
        return False
    encoded = any(f.kind == "encoded" for f in flags)
    return len(hosts) >= group_min and (encoded or len(hosts) >= 4 * group_min)


def _merged_flags(members: Sequence[NewDestination | DeniedDestination]) -> tuple[Flag, ...]:
    flags: dict[str, Flag] = {}
    for m in members:
        for f in m.flags:
            flags.setdefault(f.kind, f)
    return tuple(flags.values())


def _group(rows: Sequence[Row], when: Callable[[Row], str], group_min: int,
           merge: Callable[[GroupKey, list[Row]], Row]) -> list[Row]:
    groups: dict[GroupKey, list[Row]] = defaultdict(list)
    for d in rows:
        groups[_key(d.agent, d.host, d.port, when(d))].append(d)
    out: list[Row] = []
    for key, members in groups.items():
        hosts = [m.host for m in members]
        if _forms(key, hosts, [f for m in members for f in m.flags], group_min):
            out.append(merge(key, members))
        else:
            out.extend(members)
    return out


def _merge_new(key: GroupKey, members: list[NewDestination]) -> NewDestination:
    return NewDestination(
        key[0], key[1], key[2], min(m.first_seen for m in members),
        max(m.last_seen for m in members), sum(m.requests for m in members),
        sum(m.bytes_up for m in members), sum(m.bytes_down for m in members),
        max(m.pods for m in members), sum(m.allowed for m in members),
        sum(m.denied for m in members), sum(m.would_deny for m in members),
        _merged_flags(members), members[0].verdict, tuple(sorted(m.host for m in members)))


def _merge_denied(key: GroupKey, members: list[DeniedDestination]) -> DeniedDestination:
    return DeniedDestination(
        key[0], key[1], key[2], sum(m.deny for m in members),
        sum(m.would_deny for m in members), max(m.last_seen for m in members),
        any(m.new for m in members), _merged_flags(members), members[0].verdict,
        tuple(sorted(m.host for m in members)))


def group_new(found: Sequence[NewDestination], group_min: int) -> list[NewDestination]:
    return rank_new(_group(found, lambda d: d.first_seen, group_min, _merge_new))


def group_denied(found: Sequence[DeniedDestination],
                 group_min: int) -> list[DeniedDestination]:
    rows = _group(found, lambda d: d.last_seen, group_min, _merge_denied)
    return sorted(rows, key=lambda d: (-risk_score(d.flags), -(d.deny + d.would_deny),
                                       d.agent, d.host))


def rank_new(rows: Sequence[NewDestination]) -> list[NewDestination]:
    """Riskiest first, then the most bytes sent."""
    return sorted(rows, key=lambda d: (-risk_score(d.flags), -d.bytes_up, d.agent, d.host))
