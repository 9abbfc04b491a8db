"""The sink seam: ``await emit(batch)`` delivers a list of JSON-able items or raises ``SinkError``.

``retryable`` tells the deliverer whether to keep the batch and back off (timeouts, connection
refused, 429, 5xx) or move it to the dead-letter table (the receiver refused the content).
``MockSink`` records what it is given and can be told to fail; tests and users' tests use it.
"""

from __future__ import annotations

from typing import Any, Protocol


class SinkError(Exception):
    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Sink(Protocol):
    name: str

    async def emit(self, batch: list[dict[str, Any]]) -> None: ...

    async def aclose(self) -> None: ...


class MockSink:
    """Keeps every delivered item in ``received``; ``fail`` makes the next emits raise."""

    def __init__(self, name: str = "mock") -> None:
        self.name = name
        self.received: list[dict[str, Any]] = []
        self.batches = 0
        self.fail: SinkError | None = None
        self.closed = False

    async def emit(self, batch: list[dict[str, Any]]) -> None:
        if self.fail is not None:
            raise self.fail
        self.batches += 1
        self.received.extend(batch)

    async def aclose(self) -> None:
        self.closed = True
