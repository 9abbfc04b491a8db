"""Small wording helpers shared by every layer's messages (CLI summaries, reports)."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``counted(1, "agent")`` -> ``1 agent``; ``counted(2, "agent")`` -> ``2 agents``."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
