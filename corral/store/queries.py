"""Read side of the aggregate store: the questions the weekly review asks, as indexed queries.

Sits under ``corral.learn.report``. Every query here is answered from a rollup or an index range
(``dest_total`` by first seen, ``agent_day`` by day, the partial index of denied rows, the
``(day, bytes_up)`` covering index), so a fleet-wide review never scans ``dest_day`` whole.
Windows are given as ``since`` (RFC 3339 text, compared as text) and the matching day number.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Counts = tuple[int, int, int, int, int, int]  # requests, up, down, allow, deny, would_deny


@dataclass(frozen=True, slots=True)
class DestRow:
    agent: str
    host: str
    port: int
    requests: int
    bytes_up: int
    bytes_down: int
    n_allow: int
    n_deny: int
    n_would_deny: int
    first_seen: str
    last_seen: str


_DEST_COLS = ("agent, host, port, requests, bytes_up, bytes_down, n_allow, n_deny, n_would_deny,"
              " first_seen, last_seen")


def span(conn: sqlite3.Connection) -> tuple[int | None, int | None]:
    """First and last day with any access record."""
    row = conn.execute("SELECT min(day), max(day) FROM agent_day").fetchone()
    return row[0], row[1]


def new_destinations(conn: sqlite3.Connection, since: str) -> list[DestRow]:
    """Destinations whose first sighting (per agent) is at or after ``since``."""
    rows = conn.execute(f"SELECT {_DEST_COLS} FROM dest_total WHERE first_seen >= ? "
                        "ORDER BY agent, host, port", (since,))
    return [DestRow(*r) for r in rows]


def pods_since(conn: sqlite3.Connection, keys: Iterable[tuple[str, str, int]],
               since_day: int) -> dict[tuple[str, str, int], int]:
    """How many distinct pods used each (agent, host, port) on or after ``since_day``."""
    _fill_want(conn, keys)
    rows = conn.execute(
        "SELECT p.agent, p.host, p.port, count(*) FROM want CROSS JOIN dest_pod p "
        "ON p.agent = want.agent AND p.host = want.host AND p.port = want.port "
        "WHERE p.last_day >= ? GROUP BY p.agent, p.host, p.port", (since_day,))
    return {(a, h, p): n for a, h, p, n in rows}


def _fill_want(conn: sqlite3.Connection, keys: Iterable[tuple[str, str, int]]) -> None:
    """A temporary table of (agent, host, port) keys to join on (read-only stores too)."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS want (agent TEXT, host TEXT, port INTEGER)")
    conn.execute("DELETE FROM want")
    conn.executemany("INSERT INTO want VALUES (?,?,?)", keys)


def distinct_pods(conn: sqlite3.Connection, agent: str, hosts: Iterable[str], port: int,
                  since_day: int) -> int:
    """How many distinct pods used any of ``hosts`` on or after ``since_day``."""
    pods: set[str] = set()
    for host in hosts:
        pods.update(r[0] for r in conn.execute(
            "SELECT pod FROM dest_pod WHERE agent=? AND host=? AND port=? AND last_day >= ?",
            (agent, host, port, since_day)))
    return len(pods)


def agent_window(conn: sqlite3.Connection, since_day: int) -> dict[str, Counts]:
    """Per agent: totals and decisions over the days from ``since_day``."""
    rows = conn.execute(
        "SELECT agent, sum(requests), sum(bytes_up), sum(bytes_down), sum(n_allow), sum(n_deny),"
        " sum(n_would_deny) FROM agent_day WHERE day >= ? GROUP BY agent", (since_day,))
    return {r[0]: tuple(r[1:]) for r in rows}


def agent_first_day(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT agent, min(day) FROM agent_day GROUP BY agent"))


def top_agents(conn: sqlite3.Connection, since_day: int, limit: int) -> list[str]:
    """The agents sending the most bytes out from ``since_day``."""
    rows = conn.execute("SELECT agent FROM agent_day WHERE day >= ? GROUP BY agent "
                        "ORDER BY sum(bytes_up) DESC, agent LIMIT ?", (since_day, limit))
    return [r[0] for r in rows]


def agent_series(conn: sqlite3.Connection, since_day: int,
                 agents: list[str]) -> list[tuple[str, int, int]]:
    """(agent, day, bytes_up) of the given agents from ``since_day``."""
    marks = ",".join("?" * len(agents))
    return conn.execute(f"SELECT agent, day, bytes_up FROM agent_day WHERE day >= ? AND "
                        f"agent IN ({marks})", (since_day, *agents)).fetchall()


def day_totals(conn: sqlite3.Connection, since_day: int) -> list[tuple[int, int, int, int]]:
    """(day, bytes_up, deny, would_deny) of the whole fleet from ``since_day``."""
    return conn.execute("SELECT day, sum(bytes_up), sum(n_deny), sum(n_would_deny) FROM "
                        "agent_day WHERE day >= ? GROUP BY day", (since_day,)).fetchall()


def new_destination_days(conn: sqlite3.Connection, since: str) -> list[tuple[str, int]]:
    """(first-seen date, how many destinations were new that day, fleet-wide) from ``since``."""
    return conn.execute(
        "SELECT substr(first_seen, 1, 10) AS d, count(*) FROM dest_total "
        "WHERE first_seen >= ? GROUP BY d ORDER BY d", (since,)).fetchall()


def last_new_destination(conn: sqlite3.Connection, agents: Iterable[str]) -> dict[str, str]:
    """Per agent: when its newest destination was first seen."""
    out: dict[str, str] = {}
    for agent in agents:
        row = conn.execute("SELECT max(first_seen) FROM dest_total WHERE agent=?",
                           (agent,)).fetchone()
        if row[0] is not None:
            out[agent] = row[0]
    return out


def denied_in_window(conn: sqlite3.Connection, since_day: int) -> list[DestRow]:
    """Destinations denied (or would-be denied) on or after ``since_day``, summed per key."""
    rows = conn.execute(
        "SELECT agent, host, port, sum(requests), sum(bytes_up), sum(bytes_down), sum(n_allow),"
        " sum(n_deny), sum(n_would_deny), min(first_seen), max(last_seen) FROM dest_day "
        "INDEXED BY dest_day_denied WHERE day >= ? AND n_deny + n_would_deny > 0 "
        "GROUP BY agent, host, port ORDER BY agent, host, port", (since_day,))
    return [DestRow(*r) for r in rows]


def name_last_seen(conn: sqlite3.Connection, agent: str, name: str, wildcard: bool,
                   ports: tuple[int, ...]) -> str | None:
    """When the agent last reached ``name`` (or, with ``wildcard``, any name below it) on one
    of ``ports``, whatever the decision; None if never."""
    marks = ",".join("?" * len(ports))
    if wildcard:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        sql = (f"SELECT max(last_seen) FROM dest_total WHERE agent=? AND host LIKE ? "
               f"ESCAPE '\\' AND port IN ({marks})")
        args: tuple[object, ...] = (agent, f"%.{escaped}", *ports)
    else:
        sql = (f"SELECT max(last_seen) FROM dest_total WHERE agent=? AND host=? "
               f"AND port IN ({marks})")
        args = (agent, name, *ports)
    value = conn.execute(sql, args).fetchone()[0]
    return value if isinstance(value, str) else None


def address_destinations(conn: sqlite3.Connection, agent: str) -> list[tuple[str, int, str]]:
    """(host, port, last seen) of the agent's destinations that are IP literals."""
    return conn.execute("SELECT host, port, last_seen FROM dest_total WHERE agent=? AND "
                        "(host GLOB '[0-9]*' AND host NOT GLOB '*[a-z]*' OR host GLOB '*:*')",
                        (agent,)).fetchall()


def rule_last_allowed(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    """(agent, rule) -> when that policy entry last allowed a request."""
    rows = conn.execute("SELECT agent, rule, last_seen FROM rule_use WHERE decision='allow'")
    return {(r[0], r[1]): r[2] for r in rows}


def heavy_days(conn: sqlite3.Connection, since_day: int, until_day: int,
               min_bytes: int) -> list[tuple[str, str, int, int, int]]:
    """(agent, host, port, day, bytes_up) rows of days ``since_day..until_day`` with at least
    ``min_bytes`` up: one (day, bytes_up) index range per day, never a scan of the window."""
    days = list(range(since_day, until_day + 1))
    marks = ",".join("?" * len(days))
    return conn.execute(
        "SELECT agent, host, port, day, bytes_up FROM dest_day INDEXED BY dest_day_by_day "
        f"WHERE day IN ({marks}) AND bytes_up >= ?", (*days, min_bytes)).fetchall()


def daily_bytes_up(conn: sqlite3.Connection, keys: Iterable[tuple[str, str, int]],
                   from_day: int, to_day: int) -> dict[tuple[str, str, int], list[int]]:
    """Daily bytes up of each (agent, host, port) for days in ``[from_day, to_day)``, in one
    query (a temporary table of the keys joined on the primary key)."""
    _fill_want(conn, keys)
    # one row per key with its days folded by SQLite: 25x fewer rows cross into Python
    rows = conn.execute(
        "SELECT want.agent, want.host, want.port, group_concat(d.bytes_up) FROM want "
        "CROSS JOIN dest_day d ON d.agent = want.agent AND d.host = want.host "
        "AND d.port = want.port AND d.day >= ? AND d.day < ? GROUP BY want.rowid",
        (from_day, to_day))
    return {(a, h, p): [int(v) for v in ups.split(",")] for a, h, p, ups in rows}


def falco_window(conn: sqlite3.Connection, since_day: int) -> list[tuple[str, str, str, int]]:
    """(agent, rule, priority, count) from ``since_day``, noisiest first."""
    return conn.execute(
        "SELECT agent, rule, max(priority), sum(count) AS n FROM falco_day WHERE day >= ? "
        "GROUP BY agent, rule ORDER BY n DESC, agent, rule", (since_day,)).fetchall()


def processes(conn: sqlite3.Connection, since: str) -> list[tuple[str, str, int, str, str]]:
    """(agent, process, count, first seen, last seen) for processes active since ``since``."""
    return conn.execute(
        "SELECT agent, proc, count, first_seen, last_seen FROM proc_total WHERE last_seen >= ? "
        "ORDER BY agent, proc", (since,)).fetchall()


def falco_signatures_window(conn: sqlite3.Connection, agent: str, rule: str,
                            since_day: int) -> list[tuple[str, str, str, str, int]]:
    """(proc, parent, file, image, count) of one agent x rule, counted from ``since_day``."""
    return conn.execute(
        "SELECT proc, parent, file, image, sum(count) AS n FROM falco_sig_day WHERE agent=? "
        "AND rule=? AND day >= ? GROUP BY proc, parent, file, image ORDER BY n DESC",
        (agent, rule, since_day)).fetchall()


def falco_hours(conn: sqlite3.Connection, agent: str, rule: str,
                since_day: int) -> dict[int, int]:
    """day -> mask of the UTC hours in which the rule fired for the agent."""
    return dict(conn.execute("SELECT day, hours FROM falco_hours WHERE agent=? AND rule=? "
                             "AND day >= ?", (agent, rule, since_day)).fetchall())


def deny_hours(conn: sqlite3.Connection, agent: str, since_day: int) -> dict[int, int]:
    """day -> mask of the UTC hours in which the agent had a request denied."""
    return dict(conn.execute("SELECT day, deny_hours FROM agent_hours WHERE agent=? AND "
                             "day >= ? AND deny_hours != 0", (agent, since_day)).fetchall())


def hours_of(conn: sqlite3.Connection, keys: Iterable[tuple[str, str, int]],
             since_day: int) -> list[tuple[str, str, int, int, int, bytes]]:
    """(agent, host, port, day, hours mask, packed requests per hour) of the given keys from
    ``since_day``."""
    return _keyed_days(conn, "dest_hours", ("hours", "per_hour"), keys, since_day)


def days_of(conn: sqlite3.Connection, keys: Iterable[tuple[str, str, int]],
            since_day: int) -> list[tuple[str, str, int, int, int, int, int]]:
    """(agent, host, port, day, requests, bytes up, bytes down) of the given keys from
    ``since_day``."""
    return _keyed_days(conn, "dest_day", ("requests", "bytes_up", "bytes_down"), keys, since_day)


def _keyed_days(conn: sqlite3.Connection, table: str, columns: tuple[str, ...],
                keys: Iterable[tuple[str, str, int]], since_day: int) -> list[Any]:
    """(agent, host, port, day, *columns) of a per-day table for the given keys from
    ``since_day``, joined on the primary key."""
    _fill_want(conn, keys)
    cols = ", ".join(f"t.{c}" for c in ("agent", "host", "port", "day", *columns))
    return conn.execute(
        f"SELECT {cols} FROM want CROSS JOIN {table} t ON t.agent = want.agent "
        "AND t.host = want.host AND t.port = want.port WHERE t.day >= ?", (since_day,)).fetchall()


def agent_pods(conn: sqlite3.Connection, agent: str, since_day: int) -> int:
    """How many distinct pods of the agent made any request on or after ``since_day``."""
    row = conn.execute("SELECT count(DISTINCT pod) FROM dest_pod WHERE agent=? AND "
                       "last_day >= ?", (agent, since_day)).fetchone()
    return int(row[0])


def agent_hours(conn: sqlite3.Connection, agent: str, from_day: int,
                to_day: int) -> tuple[int, int]:
    """(mask of the UTC hours with any request, number of active days) of the agent in
    ``[from_day, to_day)``."""
    mask, days = 0, 0
    for (hours,) in conn.execute("SELECT hours FROM agent_hours WHERE agent=? AND day >= ? "
                                 "AND day < ?", (agent, from_day, to_day)):
        mask |= hours
        days += 1
    return mask, days


def agent_denials(conn: sqlite3.Connection, since_day: int) -> list[tuple[str, int, int]]:
    """(agent, day, deny) of every day with requests denied from ``since_day`` (would_deny of
    learn mode is not counted: it is what learning is for)."""
    return conn.execute("SELECT agent, day, n_deny FROM agent_day WHERE day >= ? "
                        "AND n_deny > 0", (since_day,)).fetchall()


def would_denied(conn: sqlite3.Connection, agent: str) -> list[DestRow]:
    """Every destination of the agent with a would_deny in its whole history."""
    rows = conn.execute(f"SELECT {_DEST_COLS} FROM dest_total WHERE agent=? AND "
                        "n_would_deny > 0 ORDER BY host, port", (agent,))
    return [DestRow(*r) for r in rows]


def few_host_wildcards(conn: sqlite3.Connection, since: str,
                       most: int) -> list[tuple[str, str, str, int]]:
    """(agent, wildcard rule, host, port) of the wildcard allow entries that matched at most
    ``most`` hosts since ``since``."""
    return conn.execute(
        "SELECT r.agent, r.rule, r.host, r.port FROM (SELECT agent, rule FROM rule_host "
        "WHERE last_seen >= ? GROUP BY agent, rule HAVING count(*) <= ?) c CROSS JOIN "
        "rule_host r ON r.agent = c.agent AND r.rule = c.rule WHERE r.last_seen >= ? "
        "ORDER BY r.agent, r.rule, r.host, r.port", (since, most, since)).fetchall()
