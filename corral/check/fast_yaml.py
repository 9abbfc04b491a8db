"""The fast path for YAML manifests: ``yaml_rs`` (a Rust YAML 1.2 parser) where it provably
reads a document as PyYAML's ``safe_load`` (YAML 1.1) does, PyYAML everywhere else.

Sits under ``read.py``: it turns the text of one file into ``(first line, value)`` per
document, or answers ``None`` when the whole file must go through PyYAML (so that an error,
its message and its line are exactly PyYAML's). About three times less time per document
than libyaml with corral's lean builder on generated Pod and Deployment manifests (61 vs 194 µs).

Why the result is the same (``tests/admission/test_fast_yaml.py`` checks each rule against
``yaml.safe_load_all``):

* The file is split at ``---`` lines here, so each document's first line is known (the first
  line that is not blank or a comment, where PyYAML's node starts). Files with ``\\r``, a byte
  order mark, directives (``%``), document-end markers (``...``) or content after ``---`` are
  not split here, nor are files with a character YAML 1.1 refuses or reads as a line break
  (U+0085, U+2028, U+2029: plain text in YAML 1.2): the whole file goes to PyYAML.
* A document goes to PyYAML (and only that document) when its text has a tab (yaml_rs accepts
  tab indentation that libyaml refuses), a tag, anchor or alias (``!``, ``&``, ``*`` where a
  token starts), a flow collection other than ``[]`` or ``{}`` ending a line (yaml_rs accepts
  ``[:0]``, libyaml does not), or a number that YAML 1.1 and 1.2 read differently: a leading
  zero (``0777`` is 511 in YAML 1.1), ``0x``/``0o``/``0b``, or an underscore (``1_000``,
  ``_1``). After that
  screen, an integer yaml_rs returns is written ``0`` or ``[-+]?[1-9][0-9]*``, which both
  versions read alike.
* A document also goes to PyYAML when its value holds a float, a key that is not a string, or
  a string that YAML 1.1 would read as something else if it were unquoted (``yes``, ``on``,
  ``2026-11-26``, ``12:30``, ``<<``, ``=``, ``1e3`` ...): the text may have been plain.
  Booleans and nulls need no check: YAML 1.2's spellings are a subset of 1.1's.
* Any yaml_rs error, or a PyYAML error on a document, sends the whole file to PyYAML.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import yaml
import yaml_rs
from yaml.nodes import ScalarNode

Docs = list[tuple[int, Any]]

_SEPARATOR_REST = re.compile(r"[ ]*(?:#.*)?")  # what may follow '---' on its line
# what sends a document to PyYAML (see the module docstring); searched for only when one of
# the cheap hints below is in the text (a regex over every document costs as much as yaml_rs)
_TOKEN = r"(?:(?<![^\s\[\]{},])|(?<=[\"']:))"
_DOCUMENT = re.compile(
    rf"\t|{_TOKEN}(?:[!&*]|[-+]?(?:_|0[0-9A-Za-z_]|[1-9][0-9]*_)|[\[{{](?![\]}}][ ]*(?:\n|$)))")
_HINTS = ("\t", "!", "&", "*", "_", "[", "{", "-0", "+0", " 0", "\n0", "\":0", "':0")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_UNICODE_SPECIAL = re.compile(r"[\x80-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
_CONTENT = re.compile(r"^[ ]*[^ \n#]", re.MULTILINE)
_STR = "tag:yaml.org,2002:str"
_RESOLVER: Any = yaml.resolver.Resolver()


class _Unsure(Exception):
    """The value may differ from PyYAML's: read this document with PyYAML."""


# first characters of the plain scalars PyYAML's safe resolver may read as non-strings
_FIRST = frozenset(_RESOLVER.yaml_implicit_resolvers)


@functools.lru_cache(maxsize=4096)
def _resolves_to_str(text: str) -> bool:
    return bool(_RESOLVER.resolve(ScalarNode, text, (True, False)) == _STR)


def _plain_is_str(text: str) -> bool:
    """Would YAML 1.1 (PyYAML's safe resolver) read ``text``, unquoted, as a string?"""
    return text[:1] not in _FIRST or _resolves_to_str(text)


def _vet(value: Any) -> None:
    """Raise ``_Unsure`` unless ``value`` reads the same under YAML 1.1 (see the module).
    Scalars are checked inline: one call per mapping or sequence, not per value."""
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or (key[:1] in _FIRST and not _resolves_to_str(key)):
                raise _Unsure
            if type(item) is str:
                if item[:1] in _FIRST and not _resolves_to_str(item):
                    raise _Unsure
            else:
                _vet_scalar(item)
    elif type(value) is list:
        for item in value:
            if type(item) is str:
                if item[:1] in _FIRST and not _resolves_to_str(item):
                    raise _Unsure
            else:
                _vet_scalar(item)
    else:
        _vet_scalar(value)


def _vet_scalar(value: Any) -> None:
    kind = type(value)
    if kind is dict or kind is list:
        _vet(value)
    elif kind is str:
        if not _plain_is_str(value):
            raise _Unsure
    elif kind is not int and kind is not bool and value is not None:
        raise _Unsure  # floats (1e3 and -.5 are strings in YAML 1.1), anything else


def _splittable(text: str) -> bool:
    """No carriage return, byte order mark, directive or document-end marker, and no character
    that YAML 1.1 refuses (non-printable) or reads as a line break (U+0085, U+2028, U+2029)."""
    if "\r" in text or "\ufeff" in text or text.startswith(("%", "...")):
        return False
    if "\n%" in text or "\n..." in text or _CONTROL.search(text):
        return False
    return text.isascii() or not _UNICODE_SPECIAL.search(text)


def chunks(text: str) -> list[tuple[int, str]] | None:
    """(line of the chunk's first character, text) per ``---``-separated chunk; ``None`` when
    the file has something that makes splitting it here unsafe."""
    if not _splittable(text):
        return None
    out, start, line = [], 0, 1
    padded = "\n" + text  # a '---' at index i of text is a '\n---' at index i here
    at = padded.find("\n---")
    while at >= 0:
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        rest = text[at + 3:end]
        if rest[:1] in ("", " ", "\t"):  # not '----' or '---x'
            if not _SEPARATOR_REST.fullmatch(rest):
                return None
            out.append((line, text[start:at]))
            line += text.count("\n", start, end) + 1
            start = end + 1
        at = padded.find("\n---", end + 1)
    out.append((line, text[start:]))
    return out


def _screened(chunk: str) -> bool:
    if chunk[:1] == "0":  # a token at the very start has no character before it to hint at it
        return _DOCUMENT.search(chunk) is not None
    for hint in _HINTS:
        if hint in chunk:
            return _DOCUMENT.search(chunk) is not None
    return False


def _fast(chunk: str) -> Any:
    if _screened(chunk):
        raise _Unsure
    value = yaml_rs.loads(chunk, parse_datetime=False,
                          duplicate_key_policy=yaml_rs.DuplicateKeyPolicy.LastWins)
    _vet(value)
    return value


def documents(text: str, pyyaml: Callable[[str], Docs]) -> Docs | None:
    """Every document of ``text`` with its first line, as ``pyyaml(text)`` would give them, or
    ``None``: then the caller reads the whole file with PyYAML. ``pyyaml`` reads one chunk
    (lines counted from 1) and raises on bad input."""
    parts = chunks(text)
    if parts is None:
        return None
    out: Docs = []
    for first, chunk in parts:
        content = _CONTENT.search(chunk)
        if content is None:
            continue  # blank or comments only: no document
        try:
            value = _fast(chunk)
        except _Unsure:
            try:
                out.extend((first + line - 1, data) for line, data in pyyaml(chunk))
            except Exception:  # the whole file through PyYAML: its exact error
                return None
            continue
        except Exception:  # yaml_rs refused it: PyYAML names the error
            return None
        if value is not None:
            out.append((first + chunk.count("\n", 0, content.start()), value))
    return out
