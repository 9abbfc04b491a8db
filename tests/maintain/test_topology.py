"""``corral topology``: the fleet's graph in text, Mermaid and SVG; the SVG is parsed, and
opened in headless Chromium for a screenshot whose pixels are checked."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from corral.cli import main
from corral.maintain import topology
from corral.model.load import parse_policy
from corral.verify.objects import parse_text
from tests.maintain import fleet

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SVG_NS = "{http://www.w3.org/2000/svg}"


def _graph(with_stray: bool = False) -> topology.Graph:
    policy, _ = parse_policy(fleet.POLICY)
    dump = fleet.cluster_dump()
    if with_stray:
        dump["items"].append(fleet.pod("notebook", "ai-workloads", {"app": "jupyter"},
                                        "registry.example.com/agents/nb:1", "x"))
    return topology.build(policy, parse_text(json.dumps(dump), "dump.json"))


def test_graph_edges_follow_the_policy() -> None:
    g = _graph()
    edges = {(g.node(e.src).label, g.node(e.dst).label, e.kind, e.label) for e in g.edges}
    assert ("research", "egress gateway", "proxy", ":8080") in edges
    assert ("coder", "egress gateway", "proxy", ":8081") in edges
    assert ("egress gateway", "*.weather.gov", "egress", "research") in edges
    assert ("egress gateway", "10.96.0.0/12", "egress", "coder") in edges
    assert ("egress gateway", "anything (learn mode)", "learn", "coder") in edges
    assert ("egress gateway", "anything (learn mode)", "learn", "research") not in edges
    assert ("Falco", "control plane (corral serve)", "alert", "alerts (http_output)") in edges
    # agents reach nothing but their listener and DNS
    assert {e.dst for e in g.edges if e.src.startswith("agent:")} == {"gateway", "dns"}
    assert g.node("agent:coder").detail == "learn, 2 pods"  # the debug pod carries its labels


def test_text_and_a_stray_pod() -> None:
    text = topology.to_text(_graph(with_stray=True))
    assert text.splitlines()[0] == ("research (enforce, 1 pods) -> gateway :8080 -> "
                                    "api.openai.com, *.weather.gov, en.wikipedia.org")
    assert "note: Pod/ai-workloads/notebook: in the agents' namespace, no agent profile " \
           "covers it" in text


def test_mermaid_is_a_flowchart_with_every_edge(capsys: pytest.CaptureFixture[str],
                                                site: Path) -> None:
    assert main(["topology", "-f", str(site / "corral.yaml"), "-o", "mermaid"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    g = topology.build(parse_policy(fleet.POLICY)[0])
    arrows = [line for line in lines if line.startswith("  n_") and "|" in line]
    assert len(arrows) == len(g.edges)
    assert out.count("subgraph") == out.count("\n  end")
    assert 'n_agent_research ==>|":8080"| n_gateway' in out


def _svg(site: Path) -> Path:
    out = site / "topology.svg"
    assert main(["topology", "-f", str(site / "corral.yaml"), "--cluster",
                 str(site / "dump.json"), "-o", "svg", "--out", str(out)]) == 0
    return out


def test_svg_is_well_formed_and_boxes_do_not_overlap(site: Path) -> None:
    root = ET.parse(_svg(site)).getroot()
    assert root.tag == f"{SVG_NS}svg"
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    rects = [(float(r.get("x", 0)), float(r.get("y", 0)), float(r.get("width", 0)),
              float(r.get("height", 0))) for g in root.iter(f"{SVG_NS}g")
             for r in g.iter(f"{SVG_NS}rect")]
    g = _graph()
    assert len(rects) == len(g.nodes)
    for i, (x, y, w, h) in enumerate(rects):
        assert x >= 0 and x + w <= width and y >= 0 and y + h <= height
        for x2, y2, w2, h2 in rects[i + 1:]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y
    labels = {t.text for t in root.iter(f"{SVG_NS}text")}
    assert {"research", "coder", "egress gateway", "anything (learn mode)"} <= labels


def _png_pixels(path: Path) -> tuple[int, int, bytes, int]:
    """(width, height, raw scanlines, bytes per pixel) of a non-interlaced 8-bit PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, head = 8, b"", b""
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            head = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:8], "big")
    bpp = {2: 3, 6: 4}[head[9]]
    return w, h, zlib.decompress(idat), bpp


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _colours(path: Path) -> set[tuple[int, int, int]]:
    """Every distinct colour of the image (PNG scanlines unfiltered by hand: no PNG library)."""
    w, h, raw, bpp = _png_pixels(path)
    stride = w * bpp
    prev = bytearray(stride)
    seen: set[tuple[int, int, int]] = set()
    for row in range(h):
        kind = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            add = (0, left, up, (left + up) // 2, _paeth(left, up, corner))[kind]
            line[i] = (line[i] + add) & 0xFF
        seen.update((line[x], line[x + 1], line[x + 2]) for x in range(0, stride, bpp))
        prev = line
    return seen


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package "
                    "'chromium'; scripts/dev installs it): the SVG is not looked at in a browser")
def test_svg_in_headless_chromium(site: Path, tmp_path: Path) -> None:
    svg = _svg(site)
    shot = tmp_path / "topology.png"
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1100,760", svg.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    keep = Path("/tmp/corral-topology.png")  # kept for a person to look at
    keep.write_bytes(shot.read_bytes())
    w, h, _, _ = _png_pixels(shot)
    assert (w, h) == (1100, 760)
    colours = _colours(shot)
    # the agent, gateway and learn-mode fills are drawn (not a blank or error page)
    for fill in ((0xDB, 0xEA, 0xFE), (0xDC, 0xFC, 0xE7), (0xFE, 0xF3, 0xC7)):
        assert fill in colours, fill
