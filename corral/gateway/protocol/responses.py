"""Replies the gateway writes itself: tunnel established, refusals (403/429/4xx/5xx). Sans-io.

A refusal body is one line an agent (or the LLM driving it) can act on: which agent, which
destination, which rule and reason, and what to do next (``reasons.NEXT_STEP``). The reason is
also in the ``X-Corral-Reason`` header so clients can branch on it without parsing text, and a
short form of the line (no detail) follows the status's phrase in the status line: many clients
show only that (``Tunnel connection failed: 403 Forbidden - corral: ...``) for a refused CONNECT.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from corral.decide import reasons

CONNECT_OK = b"HTTP/1.1 200 Connection established\r\n\r\n"
REASON_HEADER = "X-Corral-Reason"
MAX_PHRASE = 300
_NOT_PHRASE = re.compile(r"[^\x20-\x7e]")  # a reason phrase is one line of visible ASCII


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def refusal_text(*, agent: str, host: str, port: int, reason: str, rule: str | None,
                 detail: str | None = None) -> str:
    """The one-line body: ``corral: agent X may not reach H:P (...): next step``."""
    why = f"reason {reason}" + (f", rule {rule}" if rule else "")
    if detail:
        why += f"; {detail}"
    step = reasons.NEXT_STEP.get(reason, "contact the platform team")
    if not host:
        return f"corral: agent {agent!r} sent a request the gateway cannot serve ({why}): {step}\n"
    dest = f"[{host}]" if ":" in host else host
    return f"corral: agent {agent!r} may not reach {dest}:{port} ({why}): {step}\n"


def status_phrase(status: int, short: str | None) -> str:
    """The standard phrase, then `` - `` and ``short`` made safe for a status line."""
    if not short:
        return _phrase(status)
    return f"{_phrase(status)} - {_NOT_PHRASE.sub('?', short.strip())}"[:MAX_PHRASE]


def refusal(status: int, text: str, reason: str, *, keep_alive: bool,
            retry_after: int | None = None, short: str | None = None) -> bytes:
    """A complete HTTP/1.1 response carrying ``text``; ``short`` goes into the status line."""
    body = text.encode("utf-8", "replace")
    head = [
        f"HTTP/1.1 {status} {status_phrase(status, short)}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        f"{REASON_HEADER}: {reason}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
