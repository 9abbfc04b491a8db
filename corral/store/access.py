"""Fold gateway access-log records into in-memory aggregates, then into store rows.

Sits between the access log (``corral.model.records`` field names) and ``aggregates.py``: the
store feeds a batch of records here, gets back the rows to upsert, and writes them in one
transaction. Per record the work is one dict lookup and a few additions (the ingest target is
200,000 lines/s on one core); validation of agent, host, port, decision and day happens once per
distinct key at ``rows()`` time, and every rejected record is named by line.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import orjson

from corral.model import records as rec

DECISIONS: Final = ("allow", "deny", "would_deny")
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
MAX_ERRORS: Final = 20
UNKNOWN_POD: Final = "?"

# value list of one in-memory key: requests, bytes_up, bytes_down, first, last, first line,
# requests per UTC hour (24 counts), lines
_Agg = list[Any]
_Key = tuple[Any, Any, Any, str, Any, Any]  # agent, host, port, date, decision, rule


def day_number(iso_date: str) -> int:
    """``'2026-11-26'`` -> days since 1970-01-01 (raises ValueError when not a date)."""
    return date.fromisoformat(iso_date).toordinal() - _EPOCH_ORDINAL


def day_iso(day: int) -> str:
    return date.fromordinal(day + _EPOCH_ORDINAL).isoformat()


def to_utc_text(value: str) -> str:
    """An RFC 3339 time with any offset -> UTC text with millisecond precision and ``Z``."""
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no UTC offset (expected RFC 3339, e.g. ...Z)")
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def pod_of(address: str) -> str:
    """The pod's address from the client field without its port (``[v6]`` -> ``v6``)."""
    return address[1:-1] if address.startswith("[") and address.endswith("]") else address


@dataclass(slots=True)
class Rows:
    """The upsert rows of one flushed batch (columns in ``schema`` order)."""

    dest_day: list[tuple[Any, ...]] = field(default_factory=list)
    dest_total: list[tuple[Any, ...]] = field(default_factory=list)
    agent_day: list[tuple[Any, ...]] = field(default_factory=list)
    rule_use: list[tuple[Any, ...]] = field(default_factory=list)
    dest_pod: list[tuple[Any, ...]] = field(default_factory=list)
    tld: list[tuple[str, str]] = field(default_factory=list)
    dest_hours: list[tuple[Any, ...]] = field(default_factory=list)
    agent_hours: list[tuple[Any, ...]] = field(default_factory=list)
    rule_host: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(slots=True)
class AccessBatch:
    """Aggregates of the records seen since the last flush, plus what was rejected and why."""

    where: str = "<records>"
    # agent x day recorded live by `corral serve`: a log's lines for them are not counted again
    skip_days: frozenset[tuple[str, int]] = frozenset()
    dest: dict[_Key, _Agg] = field(default_factory=dict)
    pods: set[tuple[_Key, str]] = field(default_factory=set)
    records: int = 0
    skipped: int = 0
    rejected: int = 0
    live: int = 0  # records of agent-days already recorded live (skip_days)
    errors: list[str] = field(default_factory=list)

    def reject(self, line: int, message: str, count: int = 1) -> None:
        self.rejected += count
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{self.where}:{line}: {message}")

    def add_lines(self, lines: Iterable[bytes | str], first_line: int = 1) -> int:
        """Parse and fold JSON lines; returns the number of lines consumed."""
        return self._fold(lines, first_line, parse=True)

    def add_records(self, records: Iterable[Any], first_line: int = 1) -> int:
        """Fold already parsed records; returns how many were consumed."""
        return self._fold(records, first_line, parse=False)

    def _fold(
            self, items: Iterable[Any], first_line: int, *, parse: bool) -> int:
        # Each record is dropped once folded: keeping 100k parsed dicts alive makes the cyclic
        # GC walk them again and again (3x slower). Names are bound to locals: module attribute
        # lookups cost ~10% of the loop.
        dest, pods, reject = self.dest, self.pods, self.reject
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        f_kind, kind_access, f_time = rec.KIND, rec.KIND_ACCESS, rec.TIME
        f_up, f_down, f_agent, f_host = rec.BYTES_UP, rec.BYTES_DOWN, rec.AGENT, rec.HOST
        f_port, f_decision, f_rule, f_client = rec.PORT, rec.DECISION, rec.RULE, rec.CLIENT
        counted = rec.counted  # a tunnel's request once (open line), its bytes as deltas
        n, count, skipped = first_line - 1, 0, 0
        for n, x in enumerate(items, first_line):
            try:
                r = loads(x) if parse else x
                if r.get(f_kind, kind_access) != kind_access:
                    skipped += 1
                    continue
                t = r[f_time]
                if t[-1] != "Z":
                    t = to_utc_text(t)
                requests, up, down = counted(r)
                if up.__class__ is not int or down.__class__ is not int or up < 0 or down < 0:
                    reject(n, f"fields {f_up!r}/{f_down!r}: expected byte counts (integers "
                              f">= 0), got {up!r}/{down!r}")
                    continue
                key = (r[f_agent], r[f_host], r[f_port], t[:10], r[f_decision], r.get(f_rule))
                a = dest.get(key)
                if a is None:
                    per_hour = [0] * 24
                    per_hour[int(t[11:13])] = requests
                    dest[key] = [requests, up, down, t, t, n, per_hour, 1]
                else:
                    a[0] += requests
                    a[7] += 1
                    a[1] += up
                    a[2] += down
                    a[6][int(t[11:13])] += requests
                    if t < a[3]:
                        a[3] = t
                    elif t > a[4]:
                        a[4] = t
                pods.add((key, r[f_client].rpartition(":")[0]))
                count += 1
            except decode_error as exc:
                if x.strip():
                    reject(n, f"not a JSON object ({exc})")
            except KeyError as exc:
                reject(n, f"missing field {exc.args[0]!r} (an access-log line has "
                          f"{', '.join(rec.ACCESS_FIELDS)})")
            except (TypeError, ValueError, AttributeError, IndexError) as exc:
                reject(n, f"malformed access record: {exc}")
        self.records += count
        self.skipped += skipped
        return n - first_line + 1

    def rows(self) -> Rows:
        """Validate each distinct key once and fold the batch into upsert rows."""
        out = Rows()
        days: dict[str, int | None] = {}
        totals: dict[tuple[Any, ...], list[Any]] = {}
        agent_days: dict[tuple[Any, ...], list[Any]] = {}
        rules: dict[tuple[Any, ...], list[Any]] = {}
        dest_days: dict[tuple[Any, ...], list[Any]] = {}
        hours: dict[tuple[Any, ...], list[Any]] = {}
        wild: dict[tuple[Any, ...], str] = {}
        accepted: set[tuple[Any, Any, Any]] = set()
        for key, a in self.dest.items():
            agent, host, port, iso, decision, rule = key
            day = days.get(iso, -1)
            if day == -1:
                day = days[iso] = _day_or_none(iso)
            if not _key_ok(key, day, a):
                self.reject(a[5], _key_problem(key, day, a), a[7])
                self.records -= a[7]
                continue
            if (agent, day) in self.skip_days:
                self.live += a[7]
                self.records -= a[7]
                continue
            idx = 3 + DECISIONS.index(decision)
            accepted.add((agent, host, port))
            _merge(dest_days, (agent, host, port, day), a, idx)
            _merge_hours(hours, (agent, host, port, day), a[6], decision == "deny")
            _merge(totals, (agent, host, port), a, idx)
            _merge(agent_days, (agent, day), a, idx)
            if rule is not None:
                _merge_rule(rules, (agent, rule, decision), a)
                if decision == "allow" and rule.startswith("*."):
                    k = (agent, rule, host, port)
                    wild[k] = max(wild.get(k, a[4]), a[4])
        out.dest_day = [(*k, *v) for k, v in dest_days.items()]
        out.dest_total = [(*k, *v) for k, v in totals.items()]
        out.agent_day = [(*k, *v) for k, v in agent_days.items()]
        out.rule_use = [(*k, *v) for k, v in rules.items()]
        out.dest_pod = self._pod_rows(days, accepted)
        out.tld = _tld_rows(out.dest_total)
        out.dest_hours = [(*k, mask(v[0]), v[1], pack_hours(v[0])) for k, v in hours.items()]
        per_agent: dict[tuple[Any, ...], list[int]] = {}
        for agent, _host, _port, day, m, deny_mask, _blob in out.dest_hours:
            row = per_agent.setdefault((agent, day), [0, 0])
            row[0] |= m
            row[1] |= deny_mask
        out.agent_hours = [(*k, *v) for k, v in per_agent.items()]
        out.rule_host = [(*k, v) for k, v in wild.items()]
        return out

    def _pod_rows(self, days: Mapping[str, int | None],
                  accepted: set[tuple[Any, Any, Any]]) -> list[tuple[Any, ...]]:
        span: dict[tuple[Any, ...], list[int]] = {}
        for key, client in self.pods:
            agent, host, port, iso = key[0], key[1], key[2], key[3]
            day = days.get(iso)
            if day is None or (agent, host, port) not in accepted:
                continue
            k = (agent, host, port, pod_of(client) if client else UNKNOWN_POD)
            s = span.get(k)
            if s is None:
                span[k] = [day, day]
            else:
                s[0], s[1] = min(s[0], day), max(s[1], day)
        return [(*k, *v) for k, v in span.items()]


def tld_of(host: str) -> str | None:
    """The top-level label of a host name (None for IP literals and single labels)."""
    if host.startswith("[") or host.replace(".", "").isdigit():
        return None
    head, dot, tld = host.rpartition(".")
    return tld if dot and head else None


def _tld_rows(totals: list[tuple[Any, ...]]) -> list[tuple[str, str]]:
    first: dict[str, str] = {}
    for row in totals:
        tld = tld_of(row[1])
        if tld is not None:
            seen = first.get(tld)
            first[tld] = row[9] if seen is None else min(seen, row[9])
    return sorted(first.items())


def _day_or_none(iso: str) -> int | None:
    try:
        return day_number(iso)
    except ValueError:
        return None


def _key_ok(key: _Key, day: int | None, a: _Agg) -> bool:
    agent, host, port, _, decision, rule = key
    return (isinstance(agent, str) and bool(agent) and isinstance(host, str) and bool(host)
            and type(port) is int and 0 < port < 65536 and day is not None
            and decision in DECISIONS and (rule is None or isinstance(rule, str))
            and type(a[1]) is int and type(a[2]) is int and a[1] >= 0 and a[2] >= 0)


def _key_problem(key: _Key, day: int | None, a: _Agg) -> str:
    """Why a key failed ``_key_ok`` (the first failing field, with what was expected)."""
    agent, host, port, _, decision, rule = key
    checks = (
        (isinstance(agent, str) and bool(agent),
         f"field {rec.AGENT!r}: expected the agent name, got {agent!r}"),
        (isinstance(host, str) and bool(host),
         f"field {rec.HOST!r}: expected a host name or address, got {host!r}"),
        (type(port) is int and 0 < port < 65536,
         f"field {rec.PORT!r}: expected a port number 1-65535, got {port!r}"),
        (day is not None, f"field {rec.TIME!r}: expected RFC 3339 UTC time, got {a[3]!r}"),
        (decision in DECISIONS,
         f"field {rec.DECISION!r}: expected one of {', '.join(DECISIONS)}, got {decision!r}"),
        (rule is None or isinstance(rule, str),
         f"field {rec.RULE!r}: expected a string or null, got {rule!r}"),
    )
    return next((msg for ok, msg in checks if not ok),
                f"fields {rec.BYTES_UP!r}/{rec.BYTES_DOWN!r}: expected byte counts (integers >= 0)")


def _merge(into: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], a: _Agg,
           idx: int) -> None:
    """Add one key's aggregate into a row: requests, up, down, allow, deny, would, first, last.

    ``idx`` is the decision's column (3 allow, 4 deny, 5 would_deny).
    """
    row = into.get(key)
    if row is None:
        row = into[key] = [0, 0, 0, 0, 0, 0, a[3], a[4]]
    row[0] += a[0]
    row[1] += a[1]
    row[2] += a[2]
    row[idx] += a[0]
    row[6] = min(row[6], a[3])
    row[7] = max(row[7], a[4])


def mask(per_hour: list[int]) -> int:
    """The 24-bit mask of the hours with any request."""
    return sum(1 << h for h, n in enumerate(per_hour) if n)


def pack_hours(per_hour: list[int]) -> bytes:
    """24 hourly counts as little-endian uint16 (saturating)."""
    return array("H", (min(n, 0xFFFF) for n in per_hour)).tobytes()


def unpack_hours(blob: bytes) -> list[int]:
    return list(array("H", blob)) if blob else [0] * 24


def hsum(a: bytes | None, b: bytes | None) -> bytes:
    """SQL function: the sum of two packed hourly counts (saturating)."""
    return pack_hours([x + y for x, y in zip(unpack_hours(a or b""), unpack_hours(b or b""),
                                             strict=True)])


def _merge_hours(into: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...],
                 per_hour: list[int], denied: bool) -> None:
    row = into.get(key)
    if row is None:
        row = into[key] = [[0] * 24, 0]
    row[0] = [x + y for x, y in zip(row[0], per_hour, strict=True)]
    if denied:
        row[1] |= mask(per_hour)


def _merge_rule(into: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], a: _Agg) -> None:
    row = into.get(key)
    if row is None:
        into[key] = [a[0], a[3], a[4]]
    else:
        row[0] += a[0]
        row[1] = min(row[1], a[3])
        row[2] = max(row[2], a[4])
