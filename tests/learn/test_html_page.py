"""The HTML review as a reviewer sees it: headless Chromium (Debian's ``chromium``) renders the
page of issue 12's scenario to a PNG, and the pixels show every agent's bytes-out panel on its
own scale (a small agent's spikes are tall, not flattened by the dominant one), the review
window shaded, and the page carries the suggested diff with each legend inside its chart."""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
import zlib
from contextlib import redirect_stdout
from pathlib import Path

import orjson
import pytest

from corral.cli import main
from tests.learn import incidents

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1200, 900
BLUE, RED, WINDOW = (31, 119, 180), (214, 39, 40), (255, 243, 196)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("html")
    (root / "access.log").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in incidents.access_records()))
    (root / "corral.yaml").write_text(incidents.POLICY)
    assert main(["learn", str(root / "access.log"), "--store", str(root / "s.db")]) == 0
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["review", "-f", str(root / "corral.yaml"), "--store", str(root / "s.db"),
                     "--now", "2026-11-26T12:00:00Z", "-o", "html"]) == 0
    out = root / "review.html"
    out.write_text(buf.getvalue())
    return out


def test_legends_sit_in_their_charts_and_the_diff_is_in_the_page(page: Path) -> None:
    html = page.read_text()
    for caption in ("New destinations per day", "Denials per day"):
        figure = re.search(rf"<figure><figcaption>{caption}</figcaption>(?:(?!</figure>).)*"
                           "</figure>", html)
        assert figure is not None and 'class="legend"' in figure.group(0)
    assert re.search(r'</figure></div><div class="legend">(?:(?!<figure).)*review window'
                     r"(?:(?!<figure).)*</figure>", html)  # the panels' shared legend
    assert html.count('class="legend"') == 3
    assert "Suggested policy change" in html and 'class="add"' in html
    assert "+          - api.mistral.ai" in html
    assert "status-relay.net" not in html.split("Suggested policy change")[1].split("</pre>")[0]


def _pixels(png: bytes, rows: int) -> tuple[int, int, list[bytes]]:
    """Width, height and the first ``rows`` unfiltered RGB(A) rows of an 8-bit PNG."""
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    assert depth == 8 and colour in {2, 6}
    bpp = 3 if colour == 2 else 4
    pos, data = 8, b""
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos:pos + 4])
        if png[pos + 4:pos + 8] == b"IDAT":
            data += png[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(data)
    stride = width * bpp
    out, prev = [], bytearray(stride)
    for r in range(min(rows, height)):
        start = r * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append(bytes(line) if bpp == 3 else bytes(x for j, x in enumerate(line) if j % 4 != 3))
        prev = line
    return width, height, out


def _where(rows: list[bytes], colour: tuple[int, int, int]) -> list[int]:
    """Rows (y) holding a pixel close to ``colour``."""
    found = []
    for y, row in enumerate(rows):
        for x in range(0, len(row), 3):
            if sum(abs(row[x + k] - colour[k]) for k in range(3)) <= 30:
                found.append(y)
                break
    return found


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                            "(scripts/dev setup installs it)")
def test_chromium_shows_each_agent_on_its_own_scale(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "review.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", page.as_uri()],
        check=True, capture_output=True, timeout=120)
    width, height, rows = _pixels(shot.read_bytes(), 520)
    assert (width, height) == (WIDTH, HEIGHT)
    assert _where(rows, WINDOW), "the review window is not shaded"
    assert _where(rows, BLUE), "the dominant agent's panel is missing"
    red = _where(rows, RED)  # reporter: ~0.15 MiB a day with 0.75 MiB spikes, 1/14 of etl's peak
    assert red and max(red) - min(red) >= 40, "a small agent's spikes are flattened"
