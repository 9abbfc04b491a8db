"""``corral learn``'s reading side: files or stdin -> the aggregate store.

Sits between the command line and ``corral.store.aggregates``. Each input is sniffed by its first
line: a Falco ``http_output`` event (has ``output_fields``) or a gateway access-log line. Files
ending in ``.gz`` are read through gzip. Access lines stream to the store in batches; Falco
events are parsed here (they are far fewer) and handed over in batches too.
"""

from __future__ import annotations

import gzip
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


def _falco_events(lines: Iterable[bytes], stats: IngestStats, where: str) -> Iterator[object]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            stats.rejected += 1
            if len(stats.errors) < 20:
                stats.errors.append(f"{where}:{n}: not a JSON object ({exc})")


def ingest_source(store: AggregateStore, source: str, *, selectors: Selectors | None = None,
                  progress: Progress | None = None) -> Ingested:
    """Ingest one file (``-`` for stdin); raises OSError when it cannot be read."""
    where = "<stdin>" if source == "-" else source
    with _open(source) as fh:
        first = next((line for line in fh if line.strip()), None)
        if first is None:
            return Ingested(where, "empty", IngestStats())
        lines = chain([first], fh)
        if not is_falco(first):
            stats = store.ingest_access_lines(lines, where=where, progress=progress)
            return Ingested(where, "access", stats)
        total = IngestStats()
        events = _falco_events(lines, total, where)
        seen = 0
        while chunk := list(islice(events, FALCO_BATCH)):
            total.add(store.ingest_falco(chunk, selectors=selectors, where=where,
                                         first_line=seen + 1))
            seen += len(chunk)
            if progress is not None:
                progress(seen)
        return Ingested(where, "falco", total)
