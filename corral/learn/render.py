"""Render a review as tables: rich terminal output (plain when not a TTY) and Markdown.

Sits after ``build.py``: ``tables()`` turns the report (and optional suggestions) into titled
rows once; the terminal, Markdown and HTML outputs all draw those same tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table as RichTable

from corral.learn.report import Report
from corral.learn.suggest import Suggestion


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str  # said instead of an empty table
    risky_rows: frozenset[int] = frozenset()  # highlighted


def human_bytes(n: float) -> str:
    """Human bytes: 512 B, 1.5 KiB, 12.0 MiB."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def _flags(kinds: Sequence[str]) -> str:
    return ", ".join(kinds) if kinds else "-"


def _new(report: Report) -> Table:
    rows, risky = [], set()
    for i, d in enumerate(report.new_destinations):
        what = "addresses" if "/" in d.host else "hosts"
        host = f"{d.host} ({len(d.hosts)} {what})" if d.hosts else d.host
        rows.append((d.agent, f"{host}:{d.port}", d.first_seen[:16], str(d.requests),
                     human_bytes(d.bytes_up), human_bytes(d.bytes_down), str(d.pods),
                     d.verdict.outcome,
                     _flags([f.kind for f in d.flags]),
                     "; ".join(f.reason for f in d.flags) or "-"))
        if d.risky:
            risky.add(i)
    return Table("New destinations", ("agent", "destination", "first seen", "requests", "out",
                                      "in", "pods", "policy now", "risk", "why"),
                 tuple(rows), "no destination was seen for the first time", frozenset(risky))


def _stories(report: Report) -> Table:
    rows = tuple((st.agent, str(st.score), human_bytes(st.bytes_up),
                  "; ".join(sig.text for sig in st.signals)) for st in report.stories)
    return Table("Agents with signals, riskiest first (one story each)",
                 ("agent", "risk", "out", "signals in the window, heaviest first"), rows,
                 "no agent shows a risk signal in the window",
                 frozenset(i for i, st in enumerate(report.stories) if st.score >= 3))


def _activity(report: Report) -> Table:
    rows = tuple((a.agent, a.mode, str(a.requests), human_bytes(a.bytes_up), str(a.deny),
                  str(a.would_deny), ", ".join(f"{h} ({n})" for h, n in a.top_denied) or "-")
                 for a in report.activity)
    return Table("Denials per agent", ("agent", "mode", "requests", "out", "deny", "would_deny",
                                       "most denied"), rows, "no traffic in the window")


def _unused(report: Report) -> Table:
    rows = tuple((u.agent, u.field, u.entry, u.last_used or "never") for u in report.unused)
    return Table("Unused allow entries", ("agent", "field", "entry", "last used"), rows,
                 "none (only agents observed for at least --unused-days are judged)")


def _anomalies(report: Report) -> Table:
    rows = tuple((a.agent, f"{a.host}:{a.port}", a.day, human_bytes(a.bytes_up),
                  human_bytes(a.median),
                  f"{a.ratio:.0f}x" if a.median else "-", str(a.baseline_days))
                 for a in report.anomalies)
    return Table("Volume anomalies (bytes out far above the agent's own baseline)",
                 ("agent", "destination", "day", "out", "baseline median/day", "ratio",
                  "baseline days"), rows, "no volume anomaly", frozenset(range(len(rows))))


def _falco(report: Report) -> Table:
    rows = []
    for n in report.falco:
        exc = n.exception
        sugg = ("exception " + ", ".join(f"{f}={v}" for f, v in zip(exc.fields, exc.values,
                                                                    strict=True))
                + f" ({exc.share:.0%} of firings)") if exc else (
            f"no exception: {n.held}" if n.held else "no single benign pattern")
        rows.append((n.agent, n.rule, n.priority, str(n.count), sugg))
    return Table("Noisiest Falco rules", ("agent", "rule", "priority", "firings", "suggestion"),
                 tuple(rows), "no noisy Falco rule")


def _ready(report: Report) -> Table:
    rows = tuple((r.agent, "ready" if r.ready else "not yet", r.reason, r.last_new or "-",
                  str(r.would_deny),
                  ", ".join(f"{d.host}:{d.port} (last {d.last_seen[:10]})"
                            for d in r.would_block) or "-")
                 for r in report.readiness)
    return Table("Learn-mode agents: ready to enforce?", ("agent", "verdict", "why",
                                                          "last new destination",
                                                          "would_deny in window",
                                                          "enforcing now would block"),
                 rows, "no agent is in learn mode")


def _suggested(suggestions: Sequence[Suggestion]) -> Table:
    rows = tuple((s.kind, s.agent, s.field,
                  s.value + (f" -> {', '.join(s.replacement)}" if s.replacement else ""),
                  "yes" if s.risky else "no", s.reason)
                 for s in suggestions)
    return Table("Suggested policy changes", ("change", "agent", "field", "value", "risky",
                                              "why"), rows, "no change suggested",
                 frozenset(i for i, s in enumerate(suggestions) if s.risky))


def tables(report: Report, suggestions: Sequence[Suggestion] | None = None) -> list[Table]:
    out = [_stories(report), _new(report), _activity(report), _unused(report),
           _anomalies(report), _falco(report), _ready(report)]
    if suggestions is not None:
        out.append(_suggested(suggestions))
    return out


def _n(count: int, one: str, many: str = "") -> str:
    """``1 agent``, ``2 agents`` (``many`` defaults to ``one`` + s)."""
    return f"{count} {one}" if count == 1 else f"{count} {many or one + 's'}"


def headline(report: Report) -> str:
    c = report.counts()
    return (f"corral review {report.since} .. {report.generated}: "
            f"{_n(c['new_destinations'], 'new destination')} "
            f"({c['risky_new_destinations']} risky), "
            f"{_n(c['anomalies'], 'volume anomaly', 'volume anomalies')}, "
            f"{_n(c['unused_entries'], 'unused allow entry', 'unused allow entries')}, "
            f"{_n(c['noisy_falco_rules'], 'noisy Falco rule')}, "
            f"{_n(c['ready_to_enforce'], 'agent')} ready to enforce, "
            f"{_n(c['agents_with_signals'], 'agent')} with risk signals")


def print_text(console: Console, report: Report,
               suggestions: Sequence[Suggestion] | None = None) -> None:
    """Rich tables on a terminal; plain aligned columns (no colour, no boxes) otherwise."""
    fancy = console.is_terminal
    console.print(headline(report), markup=False)
    for t in tables(report, suggestions):
        console.print()
        if not t.rows:
            console.print(f"{t.title}: {t.empty}", markup=False)
            continue
        if not fancy:
            console.print(plain_table(t), markup=False, soft_wrap=True)
            continue
        table = RichTable(title=t.title, box=box.SIMPLE_HEAD if fancy else None,
                          title_justify="left", show_edge=False)
        for col in t.columns:
            table.add_column(col, overflow="fold")
        for i, row in enumerate(t.rows):
            table.add_row(*row, style="bold red" if fancy and i in t.risky_rows else None)
        console.print(table)


def plain_table(t: Table) -> str:
    """Aligned columns, one row per line, never wrapped (for pipes, files and grep)."""
    widths = [max(len(r[i]) for r in (t.columns, *t.rows)) for i in range(len(t.columns))]
    lines = [t.title]
    for row in (t.columns, *t.rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: Report, suggestions: Sequence[Suggestion] | None = None) -> str:
    lines = [f"# corral review: {report.policy}", "", headline(report), ""]
    for t in tables(report, suggestions):
        lines += [f"## {t.title}", ""]
        if not t.rows:
            lines += [f"_{t.empty}_", ""]
            continue
        lines.append("| " + " | ".join(t.columns) + " |")
        lines.append("|" + "---|" * len(t.columns))
        for i, row in enumerate(t.rows):
            cells = [_md_cell(c) for c in row]
            if i in t.risky_rows:
                cells[0] = f"**{cells[0]}** ⚠"
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
