"""What may talk to what: the graph the policy draws, and its text, Mermaid and SVG forms.

Sits under ``corral topology``. Nodes: the agents (in their namespace), the egress gateway with
one listener per agent, cluster DNS, the control plane, Falco, the Kubernetes API, and each
agent's allowed destinations (names, private ranges; "anything" for learn-mode agents). Edges
carry what the rendered policy lets through. With a cluster dump, each agent gets its pod count
and pods in the agents' namespace that no agent covers are drawn too. The SVG is built by hand
(no graphviz): columns left to right, agents -> gateway -> destinations, the detection path
(Falco -> control plane) underneath. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Literal

from corral.compile.control import location
from corral.maintain.inventory import agent_for
from corral.model.policy import Policy
from corral.verify.objects import Located, PodLike, pods_of

NodeKind = Literal["agent", "gateway", "dns", "control", "falco", "kube-api", "destination",
                   "range", "anything", "uncovered"]
EdgeKind = Literal["egress", "proxy", "dns", "watch", "alert", "respond", "learn"]
FALCO_NAMESPACE = "falco"


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    label: str
    kind: NodeKind
    group: str  # namespace, or "internet"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    dst: str
    label: str
    kind: EdgeKind


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    notes: tuple[str, ...] = field(default=())

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def _pods(objs: Iterable[Located] | None) -> list[PodLike]:
    if objs is None:
        return []
    objs = list(objs)
    if any(o.kind == "Pod" for o in objs):
        return [p for p in pods_of(objs) if p.owner.kind == "Pod"] or pods_of(objs)
    return pods_of(objs)


def build(policy: Policy, objects: Iterable[Located] | None = None) -> Graph:
    """The graph of ``policy``; ``objects`` (a cluster dump) adds pod counts and strays."""
    spec = policy.spec
    gw_ns = spec.gateway.namespace
    ctl = location(policy)
    ctl_ns = ctl[1] if ctl else "(outside the cluster)"
    pods = _pods(objects)
    counts: dict[str, int] = {}
    for p in pods:
        name = agent_for(policy, p.namespace, p.labels)
        if name:
            counts[name] = counts.get(name, 0) + 1
    nodes = [Node("gateway", "egress gateway", "gateway", gw_ns,
                  f"{spec.gateway.replicas} replicas, admin :{spec.gateway.admin_port}"),
             Node("dns", "cluster DNS", "dns", spec.dns.namespace,
                  ", ".join(f"{k}={v}" for k, v in spec.dns.selector.items())),
             Node("control", "control plane (corral serve)", "control", ctl_ns),
             Node("falco", "Falco", "falco", FALCO_NAMESPACE, "DaemonSet, one per node"),
             Node("kube-api", "Kubernetes API", "kube-api", "kubernetes")]
    edges: list[Edge] = []
    dest_ids: dict[str, str] = {}
    ports = spec.listener_ports()
    for agent in spec.agents:
        aid = f"agent:{agent.name}"
        detail = f"{agent.egress.mode}" + (f", {counts[agent.name]} pods" if objects is not None
                                           else "")
        nodes.append(Node(aid, agent.name, "agent", spec.namespace, detail))
        edges += [Edge(aid, "gateway", f":{ports[agent.name]}", "proxy"),
                  Edge(aid, "dns", "53 udp/tcp", "dns"),
                  Edge("falco", aid, "watches the containers", "watch")]
        targets: list[tuple[str, NodeKind]] = [(str(p), "destination")
                                               for p in agent.egress.allow]
        targets += [(str(c), "range") for c in agent.egress.allow_cidrs]
        if agent.egress.mode == "learn":
            targets.append(("anything (learn mode)", "anything"))
        for text, kind in targets:
            did = dest_ids.setdefault(text, f"dest:{len(dest_ids)}")
            if not any(n.id == did for n in nodes):
                nodes.append(Node(did, text, kind, "internet"))
            edges.append(Edge("gateway", did, agent.name,
                              "learn" if kind == "anything" else "egress"))
    edges += [Edge("falco", "control", "alerts (http_output)", "alert"),
              Edge("gateway", "control", "access log", "alert"),
              Edge("control", "gateway", "quarantine (admin)", "respond"),
              Edge("control", "kube-api", "label pods", "respond")]
    strays = [p for p in pods if p.namespace == spec.namespace
              and agent_for(policy, p.namespace, p.labels) is None]
    for p in strays:
        nodes.append(Node(f"stray:{p.owner.ref}", p.owner.name, "uncovered", spec.namespace,
                          "no agent covers it"))
        edges.append(Edge(f"stray:{p.owner.ref}", "dns", "53 udp/tcp", "dns"))
    notes = tuple(f"{p.owner.ref}: in the agents' namespace, no agent profile covers it"
                  for p in strays)
    return Graph(tuple(nodes), tuple(edges), notes)


# -- text --------------------------------------------------------------------------------------

def to_text(g: Graph) -> str:
    """Each agent's reach on one line, then every node by namespace and every edge."""
    lines = []
    for n in (n for n in g.nodes if n.kind == "agent"):
        via = next(e.label for e in g.edges if e.src == n.id and e.kind == "proxy")
        reach = [g.node(e.dst).label for e in g.edges
                 if e.src == "gateway" and e.label == n.label and e.kind in ("egress", "learn")]
        lines.append(f"{n.label} ({n.detail}) -> gateway {via} -> {', '.join(reach) or 'nothing'}")
    lines.append("")
    for group in sorted({n.group for n in g.nodes}, key=lambda s: (s == "internet", s)):
        lines.append(f"[{group}]")
        for n in (n for n in g.nodes if n.group == group):
            lines.append(f"  {n.label}" + (f"  ({n.detail})" if n.detail else ""))
    lines.append("")
    for e in g.edges:
        lines.append(f"{g.node(e.src).label} -> {g.node(e.dst).label}  [{e.kind}: {e.label}]")
    lines += [f"note: {n}" for n in g.notes]
    return "\n".join(lines) + "\n"


# -- Mermaid -----------------------------------------------------------------------------------

def _mid(node_id: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in node_id)


def _mq(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


_ARROWS: dict[EdgeKind, str] = {"egress": "-->", "proxy": "==>", "dns": "-.->",
                                "watch": "-.->", "alert": "-->", "respond": "-->",
                                "learn": "-.->"}


def to_mermaid(g: Graph) -> str:
    lines = ["flowchart LR"]
    for i, group in enumerate(sorted({n.group for n in g.nodes})):
        lines.append(f"  subgraph g{i}[{_mq(group)}]")
        for n in (n for n in g.nodes if n.group == group):
            label = n.label + (f"<br/><small>{n.detail}</small>" if n.detail else "")
            lines.append(f"    {_mid(n.id)}[{_mq(label)}]")
        lines.append("  end")
    for e in g.edges:
        lines.append(f"  {_mid(e.src)} {_ARROWS[e.kind]}|{_mq(e.label)}| {_mid(e.dst)}")
    classes = {"agent": "#dbeafe", "gateway": "#dcfce7", "uncovered": "#fee2e2",
               "anything": "#fef3c7", "falco": "#ede9fe", "control": "#ede9fe"}
    for kind, colour in classes.items():
        ids = [_mid(n.id) for n in g.nodes if n.kind == kind]
        if ids:
            lines.append(f"  classDef {kind.replace('-', '_')} fill:{colour}")
            lines.append(f"  class {','.join(ids)} {kind.replace('-', '_')}")
    return "\n".join(lines) + "\n"


# -- SVG ---------------------------------------------------------------------------------------

NODE_W, NODE_H, GAP, COL_GAP, PAD = 230, 40, 14, 120, 28
_FILL: dict[NodeKind, str] = {
    "agent": "#dbeafe", "gateway": "#dcfce7", "dns": "#f1f5f9", "control": "#ede9fe",
    "falco": "#ede9fe", "kube-api": "#f1f5f9", "destination": "#ffffff", "range": "#fff7ed",
    "anything": "#fef3c7", "uncovered": "#fee2e2"}
_STROKE: dict[EdgeKind, str] = {
    "egress": "#16a34a", "proxy": "#2563eb", "dns": "#64748b", "watch": "#7c3aed",
    "alert": "#7c3aed", "respond": "#dc2626", "learn": "#d97706"}
_DASH: dict[EdgeKind, str] = {"dns": "4 3", "watch": "2 3", "learn": "6 3"}


@dataclass(frozen=True, slots=True)
class _Box:
    x: float
    y: float

    @property
    def right(self) -> float:
        return self.x + NODE_W

    @property
    def mid(self) -> float:
        return self.y + NODE_H / 2


def _column(ids: Sequence[str], x: float, top: float) -> dict[str, _Box]:
    return {i: _Box(x, top + k * (NODE_H + GAP)) for k, i in enumerate(ids)}


def _layout(g: Graph) -> tuple[dict[str, _Box], float, float]:
    kinds = {n.id: n.kind for n in g.nodes}
    left = [n.id for n in g.nodes if kinds[n.id] in ("agent", "uncovered")]
    right = [n.id for n in g.nodes if n.group == "internet"]
    top = PAD + 30
    boxes = _column(left, PAD, top)
    mid_x = PAD + NODE_W + COL_GAP
    boxes |= {"gateway": _Box(mid_x, top), "dns": _Box(mid_x, top + 2 * (NODE_H + GAP))}
    boxes |= _column(right, mid_x + NODE_W + COL_GAP, top)
    below = top + max(len(left), len(right), 2) * (NODE_H + GAP) + 50
    boxes |= {"falco": _Box(PAD, below), "control": _Box(mid_x, below),
              "kube-api": _Box(mid_x + NODE_W + COL_GAP, below)}
    width = mid_x + 2 * NODE_W + COL_GAP + PAD
    return boxes, width, below + NODE_H + PAD + 40


def _anchor(a: _Box, b: _Box) -> tuple[float, float, float, float]:
    if abs(a.x - b.x) < 1:  # same column: leave from the bottom or top
        down = b.y > a.y
        return (a.x + NODE_W / 2, a.y + (NODE_H if down else 0),
                b.x + NODE_W / 2, b.y + (0 if down else NODE_H))
    if a.x < b.x:
        return a.right, a.mid, b.x, b.mid
    return a.x, a.mid, b.right, b.mid


def _crosses(boxes: dict[str, _Box], a: _Box, b: _Box) -> bool:
    low, high = sorted((a.y, b.y))
    return any(abs(c.x - a.x) < 1 and low < c.y < high for c in boxes.values())


def _edge_svg(e: Edge, boxes: dict[str, _Box], offset: float) -> str:
    x1, y1, x2, y2 = _anchor(boxes[e.src], boxes[e.dst])
    vertical = abs(boxes[e.src].x - boxes[e.dst].x) < 1
    blocked = vertical and _crosses(boxes, boxes[e.src], boxes[e.dst])
    if blocked:  # a box sits between them in the column: go round it, along the left side
        a, b = boxes[e.src], boxes[e.dst]
        lane = a.x - 22 + offset
        x1, y1, x2, y2 = a.x, a.mid + offset / 2, b.x, b.mid + offset / 2
        path = f"M{x1:.1f},{y1:.1f} H{lane:.1f} V{y2:.1f} H{x2:.1f}"
        x1 = x2 = lane
    elif vertical:  # parallel edges in one column sit side by side
        x1, x2 = x1 + offset, x2 + offset
        path = f"M{x1:.1f},{y1:.1f} L{x2:.1f},{y2:.1f}"
    else:
        y1, y2 = y1 + offset, y2 + offset
        dx = (x2 - x1) / 2
        path = (f"M{x1:.1f},{y1:.1f} C{x1 + dx:.1f},{y1:.1f} {x2 - dx:.1f},{y2:.1f} "
                f"{x2:.1f},{y2:.1f}")
    dash = f' stroke-dasharray="{_DASH[e.kind]}"' if e.kind in _DASH else ""
    colour = _STROKE[e.kind]
    label = ""
    if e.kind in ("proxy", "alert", "respond", "watch"):
        lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 - 4
        anchor = "middle"
        if vertical:
            anchor, lx = ("start", lx + 5) if offset >= 0 else ("end", lx - 5)
            if blocked:
                anchor, lx, ly = "end", lane - 4, ly + 2 * offset
        label = (f'<text x="{lx:.1f}" y="{ly:.1f}" class="edge-label" fill="{colour}" '
                 f'text-anchor="{anchor}">{escape(e.label)}</text>')
    return (f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash} '
            f'marker-end="url(#arrow-{e.kind})"><title>{escape(e.label)}</title></path>{label}')


def _node_svg(n: Node, box: _Box) -> str:
    detail = (f'<text x="{box.x + 10:.1f}" y="{box.y + 32:.1f}" class="detail">'
              f"{escape(n.detail)}</text>") if n.detail else ""
    ty = box.y + (18 if n.detail else 25)
    return (f'<g class="node {n.kind}"><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{NODE_W}" '
            f'height="{NODE_H}" rx="6" fill="{_FILL[n.kind]}" stroke="#334155"/>'
            f'<text x="{box.x + 10:.1f}" y="{ty:.1f}" class="label">{escape(n.label)}</text>'
            f"{detail}</g>")


def _groups_svg(g: Graph, boxes: dict[str, _Box]) -> list[str]:
    out = []
    for group in sorted({n.group for n in g.nodes}):
        inside = [boxes[n.id] for n in g.nodes if n.group == group]
        x0, y0 = min(b.x for b in inside) - 10, min(b.y for b in inside) - 24
        x1 = max(b.right for b in inside) + 10
        y1 = max(b.y for b in inside) + NODE_H + 10
        name = {"internet": "internet (via the gateway)", "kubernetes": "cluster API"}.get(
            group, f"namespace {group}")
        out.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" '
                   f'height="{y1 - y0:.1f}" rx="10" class="group"/>'
                   f'<text x="{x0 + 8:.1f}" y="{y0 + 16:.1f}" class="group-label">'
                   f"{escape(name)}</text>")
    return out


def _legend(y: float) -> str:
    items: list[tuple[EdgeKind, str]] = [
        ("proxy", "agent to its gateway listener"), ("egress", "allowed destination"),
        ("learn", "learn mode: anything"), ("dns", "DNS"), ("alert", "events"),
        ("respond", "quarantine")]
    parts = []
    x = float(PAD)
    for kind, text in items:
        dash = f' stroke-dasharray="{_DASH[kind]}"' if kind in _DASH else ""
        parts.append(f'<line x1="{x}" y1="{y}" x2="{x + 26}" y2="{y}" stroke="{_STROKE[kind]}" '
                     f'stroke-width="2"{dash}/><text x="{x + 32}" y="{y + 4}" class="detail">'
                     f"{escape(text)}</text>")
        x += 50 + 6.2 * len(text)
    return "".join(parts)


def to_svg(g: Graph, title: str) -> str:
    boxes, width, height = _layout(g)
    markers = "".join(
        f'<marker id="arrow-{k}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{c}"/></marker>' for k, c in _STROKE.items())
    seen: dict[frozenset[str], int] = {}
    edges = []
    agents = [n.id for n in g.nodes if n.kind in ("agent", "uncovered")]
    for e in g.edges:
        if e.kind == "watch" and agents and e.dst != agents[-1]:
            continue  # Falco watches every agent: one edge, to the column's last box
        pair = frozenset((e.src, e.dst))
        k = seen[pair] = seen.get(pair, -1) + 1
        edges.append(_edge_svg(e, boxes, offset=(-8.0 if k else 8.0) if len(
            [x for x in g.edges if frozenset((x.src, x.dst)) == pair]) > 1 else 0.0))
    style = ("text{font-family:DejaVu Sans,Arial,sans-serif}.label{font-size:13px;"
             "fill:#0f172a}.detail{font-size:10px;fill:#475569}.edge-label{font-size:10px}"
             ".group{fill:none;stroke:#94a3b8;stroke-dasharray:5 4}.group-label{font-size:11px;"
             "fill:#475569}.title{font-size:16px;font-weight:bold}")
    body = [f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
            f'<text x="{PAD}" y="{PAD}" class="title">{escape(title)}</text>',
            *_groups_svg(g, boxes), *edges,
            *(_node_svg(n, boxes[n.id]) for n in g.nodes), _legend(height - 20)]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img"><title>{escape(title)}</title>'
            f"<defs>{markers}<style>{style}</style></defs>" + "".join(body) + "</svg>\n")
