"""Split a request body into JSON objects: one object, a JSON array, or NDJSON lines.

Each item is decoded on its own so one malformed line never loses the good ones around it.
Nesting is capped at ``MAX_DEPTH``: orjson reads 1,024 levels but writes at most 254, so a deeper
item would be accepted here and fail later when it is written (store, sinks); it gets
``too_deep`` instead. Counting brackets (C speed) first keeps the check off the common path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from corral.control.events import BadEvent

MAX_DEPTH = 32  # Falco alerts nest 2-3 levels, gateway records 1


def objects(body: bytes) -> Iterator[tuple[int, dict[str, Any] | BadEvent]]:
    """Yield (index, decoded object or the error for that item) for every item in ``body``."""
    try:
        whole = orjson.loads(body)  # the common case: one object (Falco's http_output)
        if body.count(b"[") + body.count(b"{") > MAX_DEPTH:
            whole = _shallow(whole)
    except orjson.JSONDecodeError:
        stripped = body.strip()
        if not stripped:
            yield 0, BadEvent("empty", "empty body; expected a JSON object or NDJSON lines")
        else:
            yield from _lines(stripped)
        return
    if isinstance(whole, (dict, BadEvent)):
        yield 0, whole
        return
    items = whole if isinstance(whole, list) else [whole]
    for i, item in enumerate(items):
        yield i, _as_object(item, i)


def _shallow(whole: Any) -> Any:
    """``whole`` when no item nests deeper than MAX_DEPTH; deep items become errors."""
    if isinstance(whole, list):
        return [_too_deep(i) if _depth(item) > MAX_DEPTH else item
                for i, item in enumerate(whole)]
    return _too_deep(0) if _depth(whole) > MAX_DEPTH else whole


def _too_deep(i: int) -> BadEvent:
    return BadEvent("too_deep", f"item {i}: nested deeper than {MAX_DEPTH} levels")


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON, without recursion (stops counting past MAX_DEPTH)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > MAX_DEPTH:
            return level
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(
            item, list) else ()
        stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def _lines(body: bytes) -> Iterator[tuple[int, dict[str, Any] | BadEvent]]:
    for i, line in enumerate(body.split(b"\n")):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
            if line.count(b"[") + line.count(b"{") > MAX_DEPTH and _depth(item) > MAX_DEPTH:
                yield i, _too_deep(i)
                continue
            yield i, _as_object(item, i)
        except orjson.JSONDecodeError as exc:
            yield i, BadEvent("malformed_json", f"item {i}: not valid JSON ({exc})")


def _as_object(item: object, i: int) -> dict[str, Any] | BadEvent:
    if isinstance(item, (dict, BadEvent)):
        return item
    return BadEvent("not_an_object", f"item {i}: expected a JSON object, got {type(item).__name__}")
