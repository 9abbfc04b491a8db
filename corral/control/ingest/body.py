"""Split a request body into JSON objects: one object, a JSON array, or NDJSON lines.

Each item is decoded on its own so one malformed line never loses the good ones around it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from corral.control.events import BadEvent


def objects(body: bytes) -> Iterator[tuple[int, dict[str, Any] | BadEvent]]:
    """Yield (index, decoded object or the error for that item) for every item in ``body``."""
    try:
        whole = orjson.loads(body)  # the common case: one object (Falco's http_output)
    except orjson.JSONDecodeError:
        stripped = body.strip()
        if not stripped:
            yield 0, BadEvent("empty", "empty body; expected a JSON object or NDJSON lines")
        else:
            yield from _lines(stripped)
        return
    if isinstance(whole, dict):
        yield 0, whole
        return
    items = whole if isinstance(whole, list) else [whole]
    for i, item in enumerate(items):
        yield i, _as_object(item, i)


def _lines(body: bytes) -> Iterator[tuple[int, dict[str, Any] | BadEvent]]:
    for i, line in enumerate(body.split(b"\n")):
        if not line.strip():
            continue
        try:
            yield i, _as_object(orjson.loads(line), i)
        except orjson.JSONDecodeError as exc:
            yield i, BadEvent("malformed_json", f"item {i}: not valid JSON ({exc})")


def _as_object(item: object, i: int) -> dict[str, Any] | BadEvent:
    if isinstance(item, dict):
        return item
    return BadEvent("not_an_object", f"item {i}: expected a JSON object, got {type(item).__name__}")
