"""The ingest journal: what makes a 2xx mean "stored" without rewriting incidents per request.

Where it sits: ``ControlPlane`` appends every accepted record (a Falco alert or a gateway line
that became an event) here in one ``write`` per group commit, before the requests of that
commit are answered; the 100 ms drain then writes incidents, counts and sink items as before
and empties the journal. At start, a journal that is not empty holds exactly the records a
killed process had acknowledged but not drained: they are replayed through the processor chain.

One record per line: ``F`` or ``A`` (Falco alert, gateway access record) then the JSON. Like the
sink queues and SQLite's ``synchronous=NORMAL``, writes are not fsynced: a kill of the process
loses nothing, a power loss of the node may lose the last commits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

FALCO = b"F"
ACCESS = b"A"


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self._fd).st_size

    def append(self, records: list[bytes]) -> None:
        """Write ``records`` (each ``F``/``A`` + one JSON line, newline-terminated)."""
        data = b"".join(records)
        view = memoryview(data)
        while view:  # a short write (a signal, a full disk) must not leave half a batch
            view = view[os.write(self._fd, view):]
        self.size += len(data)

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """(kind, JSON line) of every complete record, oldest first; a record cut by a crash
        (no newline) was never acknowledged and is skipped."""
        if not self.size:
            return
        data = self.path.read_bytes()
        for line in data.split(b"\n")[:-1]:
            if line[:1] in (FALCO, ACCESS):
                yield line[:1], line[1:]

    def reset(self) -> None:
        """Everything journaled so far is in the store: start empty."""
        if self.size:
            os.ftruncate(self._fd, 0)
            self.size = 0

    def close(self) -> None:
        os.close(self._fd)
