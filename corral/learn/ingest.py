"""``corral learn``'s reading side: files or stdin -> the aggregate store.

Sits between the command line and ``corral.store.aggregates``. Each input is sniffed by its first
line: a Falco ``http_output`` event (has ``output_fields``) or a gateway access-log line. Files
ending in ``.gz`` are read through gzip. Access lines stream to the store in batches; Falco
events are parsed here (they are far fewer) and handed over in batches too.

Ingest is idempotent per input: an input's identity is the digest of its first non-blank line
(a rotated file keeps its first line; gzip is identified by its content), and the store records
how many bytes of it were folded in, in the same transaction as the aggregates. Reading the same
file again, a renamed or compressed rotation of it, or the file after it grew, folds in only
the lines past that offset.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from typing import IO, Final, cast

import orjson

from corral.store.aggregates import AggregateStore, IngestStats
from corral.store.falco import Selectors

FALCO_BATCH: Final = 10_000
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Ingested:
    source: str
    kind: str  # access | falco | empty
    stats: IngestStats


class Counted:
    """An iterator over lines that counts the bytes and lines it has handed out."""

    __slots__ = ("_it", "bytes", "lines")

    def __init__(self, lines: Iterable[bytes]) -> None:
        self._it = iter(lines)
        self.bytes = 0
        self.lines = 0

    def __iter__(self) -> Counted:
        return self

    def __next__(self) -> bytes:
        line = next(self._it)
        self.bytes += len(line)
        self.lines += 1
        return line


def source_id(first_line: bytes) -> str:
    """An input's identity: the digest of its first non-blank line."""
    return "sha256:" + hashlib.sha256(first_line.rstrip(b"\r\n")).hexdigest()


def _skip(counted: Counted, upto: int) -> bool:
    """Consume lines until ``upto`` bytes have been read; False when the input ends first."""
    while counted.bytes < upto:
        if next(counted, None) is None:
            return False
    return True


@contextmanager
def _open(source: str) -> Iterator[IO[bytes]]:
    if source == "-":
        yield sys.stdin.buffer
    elif source.endswith(".gz"):
        with gzip.open(source, "rb") as gz:
            yield cast(IO[bytes], gz)
    else:
        with open(source, "rb") as fh:
            yield fh


def is_falco(line: bytes) -> bool:
    """A Falco event line (``output_fields`` and ``priority``) rather than an access-log line."""
    return b'"output_fields"' in line and b'"priority"' in line


def _falco_events(lines: Iterable[bytes], stats: IngestStats, where: str,
                  first_line: int = 1) -> Iterator[object]:
    for n, line in enumerate(lines, first_line):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            stats.rejected += 1
            if len(stats.errors) < 20:
                stats.errors.append(f"{where}:{n}: not a JSON object ({exc})")


def _resume(fh: IO[bytes], counted: Counted | None, offset: int) -> bool:
    """Move past the first ``offset`` bytes (seek when the input can; else read lines); False
    when the input is shorter."""
    if counted is not None:
        return _skip(counted, offset)
    fh.seek(offset)
    return fh.tell() == offset


def ingest_source(store: AggregateStore, source: str, *, selectors: Selectors | None = None,
                  progress: Progress | None = None) -> Ingested:
    """Ingest one file (``-`` for stdin); raises OSError when it cannot be read."""
    where = "<stdin>" if source == "-" else source
    with _open(source) as fh:
        # files (and gzip) report their position themselves; a pipe's lines are counted
        counted = None if fh.seekable() else Counted(fh)
        reader: Iterator[bytes] = iter(fh) if counted is None else counted
        first = next((line for line in reader if line.strip()), None)
        if first is None:
            return Ingested(where, "empty", IngestStats())
        kind = "falco" if is_falco(first) else "access"
        sid = source_id(first)
        done_bytes, done_lines = store.ingested(sid)
        if done_bytes and not _resume(fh, counted, done_bytes):
            return Ingested(where, kind, IngestStats(already=done_lines))
        lines = reader if done_bytes else chain([first], reader)
        already = done_lines if done_bytes else 0

        def mark(consumed: int) -> tuple[str, int, int, str]:
            return sid, fh.tell() if counted is None else counted.bytes, consumed, where

        if kind == "access":
            stats = store.ingest_access_lines(lines, where=where, progress=progress,
                                              first_line=already + 1, mark=mark)
            stats.already = already
            return Ingested(where, kind, stats)
        total = IngestStats(already=already)
        events = _falco_events(lines, total, where, already + 1)
        seen = already
        while chunk := list(islice(events, FALCO_BATCH)):
            total.add(store.ingest_falco(chunk, selectors=selectors, where=where,
                                         first_line=seen + 1, mark=mark))
            seen += len(chunk)
            if progress is not None:
                progress(seen)
        return Ingested(where, kind, total)
