"""Following a gateway log file: partial lines, rotation, truncation, resume after restart."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from corral.control.ingest.tail import Tailer
from tests.control.conftest import Clock, PlaneFactory, access, run


def test_rotation_truncation_partial_lines_and_resume(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    got: list[bytes] = []
    log.write_bytes(b"a\nb\nc\n")
    t = Tailer(log, got.append)
    assert t.poll() == 3
    with log.open("ab") as f:
        f.write(b"d\npart")
    assert t.poll() == 1
    with log.open("ab") as f:
        f.write(b"ial\ne\n")  # the rest of the line, then one more, then rotation
    os.rename(log, tmp_path / "access.log.1")
    log.write_bytes(b"f\n")
    assert t.poll() == 3
    assert got == [b"a", b"b", b"c", b"d", b"partial", b"e", b"f"]
    log.write_bytes(b"")  # truncated in place (copytruncate), noticed at the next poll
    assert t.poll() == 0
    with log.open("ab") as f:
        f.write(b"g\n")
    assert t.poll() == 1 and got[-1] == b"g"
    saved = t.position
    t.close()
    with log.open("ab") as f:
        f.write(b"h\n")
    again: list[bytes] = []
    t2 = Tailer(log, again.append, start=saved)
    t2.poll()
    assert again == [b"h"]  # resumed, nothing read twice
    t2.close()


def test_tailed_lines_reach_incidents_and_position_is_saved(make_plane: PlaneFactory,
                                                            tmp_path: Path, clock: Clock) -> None:
    async def go() -> None:
        log = tmp_path / "gw.log"
        log.write_bytes(b"\n".join(orjson.dumps(access()) for _ in range(4)) + b"\n{broken\n")
        plane = make_plane()
        tailer = plane.tail(log)
        await plane.start(background=False)
        tailer.poll()
        plane.tick()
        [inc] = plane.store.incidents()
        assert inc["count"] == 4 and inc["rule"] == "gateway denial"
        assert 'reason="malformed_json"} 1.0' in plane.metrics.render().decode()
        await plane.aclose()
        with log.open("ab") as f:
            f.write(orjson.dumps(access()) + b"\n")
        again = make_plane()
        t2 = again.tail(log)
        await again.start(background=False)
        assert t2.poll() == 1  # only the new line
        again.tick()
        [inc] = again.store.incidents()
        assert inc["count"] == 5
        await again.aclose()
    run(go())
