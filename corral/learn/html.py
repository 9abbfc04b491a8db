"""The review as one self-contained HTML page: inline SVG charts and the report's tables.

Sits after ``render.tables``. No external assets (no scripts, fonts or stylesheets fetched):
the page opens from a mail attachment or an air-gapped laptop. Charts: bytes out per agent per
day (lines), new destinations per day (bars), deny and would_deny per day (stacked bars).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from corral.learn.render import Table, headline, human_bytes, tables
from corral.learn.report import Report
from corral.learn.suggest import Suggestion

W, H, PAD_L, PAD_B, PAD_T = 760, 220, 76, 28, 14
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}tr.risky td{background:#fde8e8}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}.empty{color:#777;font-style:italic}
svg text{font-size:10px;fill:#444}.legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
"""


def _scale(values: Sequence[float]) -> float:
    top = max(values, default=0)
    return top if top > 0 else 1.0


def _axes(days: Sequence[str], top: float, label: str, fmt: bool) -> list[str]:
    out = [f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W}" y2="{H - PAD_B}" stroke="#999"/>',
           f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#999"/>']
    shown = human_bytes(top) if fmt else str(int(top))
    out.append(f'<text x="{PAD_L - 4}" y="{PAD_T + 4}" text-anchor="end">{escape(shown)}</text>')
    out.append(f'<text x="{PAD_L - 4}" y="{H - PAD_B}" text-anchor="end">0</text>')
    out.append(f'<text x="{PAD_L - 4}" y="{H // 2}" text-anchor="end">{escape(label)}</text>')
    if days:
        step = max(1, len(days) // 6)
        for i in range(0, len(days), step):
            out.append(f'<text x="{_x(i, len(days)):.1f}" y="{H - 8}" '
                       f'text-anchor="middle">{escape(days[i][5:])}</text>')
    return out


def _x(i: int, n: int) -> float:
    return PAD_L + (i + 0.5) * (W - PAD_L) / max(n, 1)


def _y(v: float, top: float) -> float:
    return H - PAD_B - v / top * (H - PAD_B - PAD_T)


def _svg(title: str, body: list[str]) -> str:
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title>{"".join(body)}</svg>'
            f"<figcaption>{escape(title)}</figcaption></figure>")


def _legend(names: Sequence[str]) -> str:
    items = "".join(f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>'
                    f"{escape(n)}</span>" for i, n in enumerate(names))
    return f'<div class="legend">{items}</div>'


def line_chart(title: str, days: Sequence[str], series: Mapping[str, Sequence[int]]) -> str:
    top = _scale([v for s in series.values() for v in s])
    body = _axes(days, top, "bytes out", fmt=True)
    for i, (name, values) in enumerate(series.items()):
        pts = " ".join(f"{_x(j, len(days)):.1f},{_y(v, top):.1f}" for j, v in enumerate(values))
        body.append(f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" '
                    f'stroke-width="1.6" points="{pts}"><title>{escape(name)}</title></polyline>')
    return _svg(title, body) + _legend(list(series))


def bar_chart(title: str, days: Sequence[str], stacks: Mapping[str, Sequence[int]]) -> str:
    totals = [sum(s[i] for s in stacks.values()) for i in range(len(days))]
    top = _scale(totals)
    body = _axes(days, top, "count", fmt=False)
    width = (W - PAD_L) / max(len(days), 1) * 0.7
    for j in range(len(days)):
        base = 0.0
        for i, (name, values) in enumerate(stacks.items()):
            v = values[j]
            if v:
                y0, y1 = _y(base, top), _y(base + v, top)
                body.append(f'<rect x="{_x(j, len(days)) - width / 2:.1f}" y="{y1:.1f}" '
                            f'width="{width:.1f}" height="{y0 - y1:.1f}" '
                            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(days[j])} '
                            f"{escape(name)}: {v}</title></rect>")
            base += v
    return _svg(title, body) + _legend(list(stacks))


def _table(t: Table) -> str:
    if not t.rows:
        return f'<h2>{escape(t.title)}</h2><p class="empty">{escape(t.empty)}</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in t.columns)
    rows = "".join(
        f'<tr{" class=risky" if i in t.risky_rows else ""}>'
        + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(t.rows))
    return f"<h2>{escape(t.title)}</h2><table><tr>{head}</tr>{rows}</table>"


def page(report: Report, suggestions: Sequence[Suggestion] | None = None) -> str:
    c = report.charts
    charts = [
        line_chart("Bytes out per agent per day", c.days, c.bytes_up),
        bar_chart("New destinations per day", c.days, {"new destinations": c.new_destinations}),
        bar_chart("Denials per day", c.days, {"deny": c.deny, "would_deny": c.would_deny}),
    ]
    body = "".join(_table(t) for t in tables(report, suggestions))
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>corral review: {escape(report.policy)}</title><style>{_CSS}</style></head>"
            f"<body><h1>corral review: {escape(report.policy)}</h1>"
            f"<p>{escape(headline(report))}</p>"
            f'<div class="charts">{"".join(charts)}</div>{body}</body></html>\n')
