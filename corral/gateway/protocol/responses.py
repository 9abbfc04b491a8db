"""Replies the gateway writes itself: tunnel established, refusals (403/429/4xx/5xx). Sans-io.

A refusal body is one line an agent (or the LLM driving it) can act on: which agent, which
destination, which rule and reason, and what to do next (``reasons.NEXT_STEP``). The reason is
also in the ``X-Corral-Reason`` header so clients can branch on it without parsing text.

Many clients never show a refusal's body (a refused CONNECT is an exception with the status line
in it), so a short form of the same line is the status line's reason phrase too: visible ASCII
and spaces only (RFC 9112 ``reason-phrase``), at most ``PHRASE_MAX`` characters.
"""

from __future__ import annotations

from http import HTTPStatus

from corral.decide import reasons

CONNECT_OK = b"HTTP/1.1 200 Connection established\r\n\r\n"
REASON_HEADER = "X-Corral-Reason"
PHRASE_MAX = 256


def _standard_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _without_detail(line: str) -> str:
    """``line`` (a ``refusal_text``) without its ``; detail`` part, the least needed one."""
    start, end = line.find(" (reason "), line.rfind("): ")
    cut = line.find("; ", start, end) if 0 <= start < end else -1
    return line if cut < 0 else line[:cut] + line[end:]


def reason_phrase(status: int, text: str) -> str:
    """The short, single-line, printable-ASCII form of ``text`` for the status line.

    Anything outside visible ASCII and space (control characters, CR/LF, non-ASCII taken from
    the request) becomes ``?`` and runs of spaces fold to one. A line longer than ``PHRASE_MAX``
    loses its detail first (what next matters more), then is cut with ``...``. An empty result
    falls back to the standard phrase of ``status``.
    """
    short = " ".join("".join(c if " " <= c <= "~" else "?" for c in text.strip()).split())
    if len(short) > PHRASE_MAX:
        short = _without_detail(short)
    if len(short) > PHRASE_MAX:
        short = short[:PHRASE_MAX - 3].rstrip() + "..."
    return short or _standard_phrase(status)


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


def refusal(status: int, text: str, reason: str, *, keep_alive: bool,
            retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 response carrying ``text``."""
    body = text.encode("utf-8", "replace")
    head = [
        f"HTTP/1.1 {status} {reason_phrase(status, text)}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        f"{REASON_HEADER}: {reason}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
