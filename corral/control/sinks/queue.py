"""A sink's disk-backed queue: append-only segment files of JSON lines, one directory per sink.

One appender (the ingest process: ``put``) and one reader (the deliverer, in the sink worker
process or in-process: ``peek``/``ack``/``dead``). An item's id is its position in the stream;
the reader's position (the next id to deliver) is written to ``ack`` atomically after each
acknowledged batch, so an outage or a restart loses nothing and resumes where delivery stopped
(at-least-once: a crash between the receiver's answer and the ``ack`` write redelivers that batch;
every item carries a ``key`` so receivers, and Elasticsearch's ``_id``, drop redeliveries).
Segments roll at ``SEGMENT_BYTES`` and are deleted once fully acknowledged. Appending a line costs
one ``write`` per batch — an SQLite queue spent ~40 us of CPU per event on B-tree and WAL work.
``max_rows`` bounds the disk: beyond it new items are dropped and counted, never silently.
Writes are not fsynced (like SQLite's ``synchronous=NORMAL``): a crash of the process loses
nothing; a power loss may lose the last batches.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, BinaryIO

import orjson

SEGMENT_BYTES = 16 << 20
_PREFIX, _SUFFIX = "seg-", ".ndjson"


class DiskQueue:
    def __init__(self, path: str | Path, max_rows: int = 1_000_000) -> None:
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._max = max_rows
        self._out: BinaryIO | None = None  # current segment, appender side
        self._out_size = 0
        self.next_id = self._recover_next()
        self.acked = self._read_ack()
        self.dropped = 0
        # reader side: where the next peek starts (segment first id, line in it, byte offset)
        self._rseg: int | None = None
        self._roff = 0
        self._peeked: list[tuple[int, dict[str, Any]]] = []
        self._peek_end = (0, 0)

    @property
    def depth(self) -> int:
        return max(0, self.next_id - self.acked)

    # -- appender -----------------------------------------------------------------------------

    def put(self, items: list[dict[str, Any]]) -> None:
        self.acked = self._read_ack()  # the reader may be another process
        room = self._max - self.depth
        if room < len(items):
            self.dropped += len(items) - max(room, 0)
            items = items[: max(room, 0)]
        if not items:
            return
        data = b"".join(orjson.dumps(i) + b"\n" for i in items)
        out = self._segment_for_append()
        out.write(data)
        out.flush()
        self._out_size += len(data)
        self.next_id += len(items)

    def refresh(self) -> int:
        """Re-read the reader's position (another process may have delivered)."""
        self.acked = self._read_ack()
        return self.depth

    def _segment_for_append(self) -> BinaryIO:
        if self._out is not None and self._out_size >= SEGMENT_BYTES:
            self._out.close()
            self._out = None
        if self._out is None:
            segs = self._segments()
            last_small = segs and self._size(segs[-1]) < SEGMENT_BYTES
            first = segs[-1] if last_small else self.next_id
            self._out = self._seg_path(first).open("ab")
            self._out_size = self._out.tell()
        return self._out

    # -- reader -------------------------------------------------------------------------------

    def peek(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        """The next (up to) ``n`` unacknowledged items, oldest first; the same ones again until
        they are acknowledged."""
        if self._peeked:
            return self._peeked[:n]
        self.acked = self._read_ack()
        if self._rseg is None:
            self._seek_reader(self.acked)
        lines: list[bytes] = []
        seg, off = self._rseg, self._roff
        while seg is not None and len(lines) < n:
            off = self._read_lines(seg, off, n - len(lines), lines)
            later = [s for s in self._segments() if s > seg] if len(lines) < n else []
            if not later:
                break
            # rolled over: every write to ``seg`` happened before ``later[0]`` was created
            off = self._read_lines(seg, off, n - len(lines), lines)
            if len(lines) < n:
                seg, off = later[0], 0
        self._peeked = [(self.acked + i, orjson.loads(x)) for i, x in enumerate(lines)]
        self._peek_end = (seg or 0, off)
        return self._peeked

    def ack(self, ids: list[int]) -> None:
        if not ids:
            return
        assert ids == [r[0] for r in self._peeked[: len(ids)]], "ack the peeked batch in order"
        if len(ids) == len(self._peeked):
            self._rseg, self._roff = self._peek_end
            self._peeked = []
        else:  # partial: re-read from the new position next time
            self._rseg = None
            self._peeked = []
        self._write_ack(ids[-1] + 1)

    def dead(self, rows: list[tuple[int, dict[str, Any]]], error: str, now: float) -> None:
        """Keep refused items in ``dead.ndjson`` (for inspection and replay), then skip them."""
        with (self.dir / "dead.ndjson").open("ab") as f:
            f.write(b"".join(orjson.dumps({"id": i, "error": error, "time": now, "item": item})
                             + b"\n" for i, item in rows))
        self.ack([i for i, _ in rows])

    def dead_count(self) -> int:
        path = self.dir / "dead.ndjson"
        return path.read_bytes().count(b"\n") if path.exists() else 0

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    # -- files --------------------------------------------------------------------------------

    def _seg_path(self, first: int) -> Path:
        return self.dir / f"{_PREFIX}{first:016d}{_SUFFIX}"

    def _segments(self) -> list[int]:
        return sorted(int(p.name[len(_PREFIX):-len(_SUFFIX)])
                      for p in self.dir.glob(f"{_PREFIX}*{_SUFFIX}"))

    def _size(self, first: int) -> int:
        try:
            return self._seg_path(first).stat().st_size
        except FileNotFoundError:
            return 0

    def _recover_next(self) -> int:
        """Next id from the newest segment; a line cut short by a crash is cut off."""
        segs = self._segments()
        if not segs:
            return self._read_ack()
        path = self._seg_path(segs[-1])
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
        return segs[-1] + data.count(b"\n")

    def _read_ack(self) -> int:
        try:
            return int((self.dir / "ack").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _write_ack(self, next_id: int) -> None:
        tmp = self.dir / f".ack.{os.getpid()}"
        tmp.write_text(str(next_id))
        os.replace(tmp, self.dir / "ack")
        self.acked = next_id
        segs = self._segments()
        for first, nxt in itertools.pairwise(segs):  # fully delivered segments
            if nxt <= next_id:
                self._seg_path(first).unlink(missing_ok=True)

    def _seek_reader(self, next_id: int) -> None:
        """Position the reader at item ``next_id`` (after a restart or a partial ack)."""
        segs = [s for s in self._segments() if s <= next_id]
        if not segs:
            later = self._segments()
            self._rseg, self._roff = (later[0], 0) if later else (None, 0)
            return
        self._rseg = segs[-1]
        skip = next_id - segs[-1]
        data = self._seg_path(segs[-1]).read_bytes()
        off = 0
        for _ in range(skip):
            off = data.index(b"\n", off) + 1
        self._roff = off

    def _read_lines(self, first: int, off: int, n: int, into: list[bytes]) -> int:
        """Append up to ``n`` complete lines of a segment from byte ``off`` to ``into``;
        returns the offset after them (a partly written last line is left for later)."""
        try:
            f = self._seg_path(first).open("rb")
        except FileNotFoundError:
            return off
        with f:
            f.seek(off)
            want = len(into) + n
            rest = b""
            while len(into) < want:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                data = rest + chunk
                pos = 0
                while len(into) < want:
                    end = data.find(b"\n", pos)
                    if end < 0:
                        break
                    into.append(data[pos:end])
                    pos = end + 1
                off += pos  # ``off`` is the file offset of ``data[pos:]``
                rest = data[pos:]
            return off
