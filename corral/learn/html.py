"""The review as one self-contained HTML page: inline SVG charts, the report's tables and the
suggested policy change as a diff.

Sits after ``render.tables``. No external assets (no scripts, fonts or stylesheets fetched):
the page opens from a mail attachment or an air-gapped laptop. Charts show the history
(``chart_days``) with the review window shaded: bytes out as small multiples, one panel per top
agent on its own scale (one agent sending 100x the others no longer flattens the rest), new
destinations per day, deny and would_deny per day (stacked). Each chart's legend sits inside
its own figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from corral.learn.render import Table, headline, human_bytes, tables
from corral.learn.report import Report
from corral.learn.suggest import Suggestion

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22")
WINDOW_FILL = "#fff3c4"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}tr.risky td{background:#fde8e8}
.charts,.multiples{display:flex;flex-wrap:wrap;gap:1.2rem;align-items:flex-start}
figure{margin:0;border:1px solid #eee;padding:.5rem}figcaption{font-weight:600;margin:.2rem 0}
.empty{color:#777;font-style:italic}
svg text{font-size:10px;fill:#444}.legend{font-size:.8rem;margin-top:.2rem}
.legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border:1px solid #ccc}
pre.diff{background:#f8f8f8;padding:.6rem;font-size:.8rem;overflow-x:auto}
pre.diff .add{color:#116611;background:#e6ffe6}pre.diff .del{color:#991111;background:#ffe6e6}
"""


@dataclass(frozen=True, slots=True)
class Frame:
    """The plotting area of one chart."""

    w: int = 560
    h: int = 200
    left: int = 70
    bottom: int = 24
    top: int = 12

    def x(self, i: int, n: int) -> float:
        return self.left + (i + 0.5) * (self.w - self.left) / max(n, 1)

    def y(self, v: float, top: float) -> float:
        return self.h - self.bottom - v / top * (self.h - self.bottom - self.top)


BIG = Frame()
SMALL = Frame(w=300, h=110, left=58, bottom=20, top=10)


def _scale(values: Sequence[float]) -> float:
    top = max(values, default=0)
    return top if top > 0 else 1.0


def _window(f: Frame, days: Sequence[str], since: str) -> str:
    """The review window, shaded behind the data."""
    first = next((i for i, d in enumerate(days) if d >= since[:10]), len(days))
    if first >= len(days):
        return ""
    step = (f.w - f.left) / max(len(days), 1)
    x0 = f.left + first * step
    return (f'<rect x="{x0:.1f}" y="{f.top}" width="{f.w - x0:.1f}" '
            f'height="{f.h - f.bottom - f.top}" fill="{WINDOW_FILL}"><title>review window from '
            f"{escape(since[:10])}</title></rect>")


def _axes(f: Frame, days: Sequence[str], top: float, fmt: bool, ticks: int) -> list[str]:
    base = f.h - f.bottom
    out = [f'<line x1="{f.left}" y1="{base}" x2="{f.w}" y2="{base}" stroke="#999"/>',
           f'<line x1="{f.left}" y1="{f.top}" x2="{f.left}" y2="{base}" stroke="#999"/>']
    shown = human_bytes(top) if fmt else str(int(top))
    out.append(f'<text x="{f.left - 4}" y="{f.top + 6}" text-anchor="end">{escape(shown)}</text>')
    out.append(f'<text x="{f.left - 4}" y="{base}" text-anchor="end">0</text>')
    if days:
        step = max(1, len(days) // ticks)
        for i in range(0, len(days), step):
            out.append(f'<text x="{f.x(i, len(days)):.1f}" y="{f.h - 6}" '
                       f'text-anchor="middle">{escape(days[i][5:])}</text>')
    return out


def _svg(f: Frame, title: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{f.w}" height="{f.h}" '
            f'viewBox="0 0 {f.w} {f.h}" role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title>{"".join(body)}</svg>')


def _legend(names: Sequence[str], window: bool = True) -> str:
    items = "".join(f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>'
                    f"{escape(n)}</span>" for i, n in enumerate(names))
    if window:
        items += f'<span><i style="background:{WINDOW_FILL}"></i>review window</span>'
    return f'<div class="legend">{items}</div>'


def _figure(title: str, svg: str, legend: str) -> str:
    return f"<figure><figcaption>{escape(title)}</figcaption>{svg}{legend}</figure>"


def small_multiples(title: str, days: Sequence[str], since: str,
                    series: Mapping[str, Sequence[int]]) -> str:
    """One small line chart per series, each on its own scale, in one figure."""
    panels = []
    for i, (name, values) in enumerate(series.items()):
        top = _scale(values)
        body = [_window(SMALL, days, since), *_axes(SMALL, days, top, True, 4)]
        pts = " ".join(f"{SMALL.x(j, len(days)):.1f},{SMALL.y(v, top):.1f}"
                       for j, v in enumerate(values))
        body.append(f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" '
                    f'stroke-width="1.6" points="{pts}"><title>{escape(name)}</title>'
                    "</polyline>")
        total = human_bytes(sum(values))
        panels.append(_figure(f"{name} ({total} in {len(days)} days)",
                              _svg(SMALL, f"{title}: {name}", body), ""))
    legend = _legend([], window=True)
    return (f'<figure class="wide"><figcaption>{escape(title)} (each panel on its own scale)'
            f'</figcaption><div class="multiples">{"".join(panels)}</div>{legend}</figure>')


def bar_chart(title: str, days: Sequence[str], since: str,
              stacks: Mapping[str, Sequence[int]]) -> str:
    totals = [sum(s[i] for s in stacks.values()) for i in range(len(days))]
    top = _scale(totals)
    body = [_window(BIG, days, since), *_axes(BIG, days, top, False, 6)]
    width = (BIG.w - BIG.left) / max(len(days), 1) * 0.7
    for j in range(len(days)):
        base = 0.0
        for i, (name, values) in enumerate(stacks.items()):
            v = values[j]
            if v:
                y0, y1 = BIG.y(base, top), BIG.y(base + v, top)
                body.append(f'<rect x="{BIG.x(j, len(days)) - width / 2:.1f}" y="{y1:.1f}" '
                            f'width="{width:.1f}" height="{y0 - y1:.1f}" '
                            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(days[j])} '
                            f"{escape(name)}: {v}</title></rect>")
            base += v
    return _figure(title, _svg(BIG, title, body), _legend(list(stacks)))


def _table(t: Table) -> str:
    if not t.rows:
        return f'<h2>{escape(t.title)}</h2><p class="empty">{escape(t.empty)}</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in t.columns)
    rows = "".join(
        f'<tr{" class=risky" if i in t.risky_rows else ""}>'
        + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(t.rows))
    return f"<h2>{escape(t.title)}</h2><table><tr>{head}</tr>{rows}</table>"


def diff_block(diff: str) -> str:
    """The suggested policy change as a coloured unified diff."""
    if not diff:
        return ('<h2>Suggested policy change</h2><p class="empty">nothing to change without '
                "--include-risky</p>")
    lines = []
    for line in diff.splitlines():
        cls = "add" if line.startswith("+") and not line.startswith("+++") else (
            "del" if line.startswith("-") and not line.startswith("---") else "")
        text = escape(line)
        lines.append(f'<span class="{cls}">{text}</span>' if cls else text)
    return ("<h2>Suggested policy change (what --apply writes)</h2>"
            f'<pre class="diff">{chr(10).join(lines)}</pre>')


def page(report: Report, suggestions: Sequence[Suggestion] | None = None,
         diff: str | None = None) -> str:
    c = report.charts
    charts = [
        small_multiples("Bytes out per agent per day", c.days, report.since, c.bytes_up),
        bar_chart("New destinations per day", c.days, report.since,
                  {"new destinations": c.new_destinations}),
        bar_chart("Denials per day", c.days, report.since,
                  {"deny": c.deny, "would_deny": c.would_deny}),
    ]
    body = "".join(_table(t) for t in tables(report, suggestions))
    change = diff_block(diff) if diff is not None else ""
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>corral review: {escape(report.policy)}</title><style>{_CSS}</style></head>"
            f"<body><h1>corral review: {escape(report.policy)}</h1>"
            f"<p>{escape(headline(report))}</p>"
            f'<div class="charts">{"".join(charts)}</div>{change}{body}</body></html>\n')
