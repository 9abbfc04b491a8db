"""The access log never blocks on a pipe nobody reads, never splits a line, and says so."""

from __future__ import annotations

import os
from typing import cast

import orjson
import pytest

from corral.gateway import log as access
from corral.model.records import AccessRecord


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_unread_pipe_buffers_then_drops_and_reports_stalled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "MAX_PENDING", 256 * 1024)
    read_fd, write_fd = os.pipe()
    clock = Clock()
    out = access.AccessLog.__new__(access.AccessLog)
    monkeypatch.setattr(access.sys, "stdout", os.fdopen(write_fd, "wb", closefd=False))
    out.__init__("-", clock)  # type: ignore[misc]
    record = cast(AccessRecord, {"host": "x" * 300})
    for _ in range(2000):  # 600 KB: the 64 KiB pipe is full, then the buffer
        out.write(record)
    out.flush()
    assert out.dropped > 0 and not out.stalled()
    clock.now += access.STALL_SECONDS + 1
    assert out.stalled()
    data = b""
    os.set_blocking(read_fd, False)
    for _ in range(1000):  # drain, letting the writer refill (bounded)
        try:
            data += os.read(read_fd, 1 << 16)
        except BlockingIOError:
            if not out._buf:
                break
            out.flush()
    assert not out.stalled()
    lines = data.splitlines()
    assert len(lines) + out.dropped == 2000
    assert all(orjson.loads(line) == {"host": "x" * 300} for line in lines)
    out.close()
    os.close(read_fd)
    os.close(write_fd)
