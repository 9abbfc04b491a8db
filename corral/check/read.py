"""Manifests in, ``Document`` values out: files, folders, multi-document YAML, JSON, ``kubectl get
-o json`` lists, AdmissionReview requests, stdin.

YAML streams are parsed by libyaml (``CSafeLoader``), one parser per file, so each document
knows its first line and a parse error names file and line; the composed nodes are turned into
values by a small builder that does what PyYAML's SafeConstructor does for plain mappings,
sequences and strings, and hands anything else (tags, merge keys, non-string scalars) to that
constructor: about a third less time per document. JSON goes through orjson.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from corral.check import fast_yaml

SUFFIXES = (".yaml", ".yml", ".json")
_SEPARATOR = re.compile(r"^---(?:[ \t].*)?$", re.MULTILINE)
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):  # type: ignore[misc]  # PyYAML's loaders are untyped
    """libyaml's safe loader with the scalar tag resolution memoised for the file: the same keys
    and values recur in every document, and resolving runs Python regexes per scalar. The tag
    of a scalar depends only on its text and style here (the safe loader has no path
    resolvers), so the memo cannot change a result."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._tags: dict[tuple[str, Any], str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is not ScalarNode:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = super().resolve(kind, value, implicit)
        return tag
_STR, _SEQ, _MAP = (f"tag:yaml.org,2002:{t}" for t in ("str", "seq", "map"))
_MERGE = "tag:yaml.org,2002:merge"
_SCALARS = {f"tag:yaml.org,2002:{t}": f"construct_yaml_{t}" for t in ("bool", "int", "null")}


class ReadError(Exception):
    """Unreadable input; ``source`` and ``line`` say where."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")
        self.source, self.line, self.message = source, line, message


@dataclass(frozen=True, slots=True)
class Document:
    """One Kubernetes object to check, and the admission request it stands for."""

    source: str
    line: int
    obj: dict[str, Any]
    operation: str = "CREATE"
    sub_resource: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def slim(self) -> Document:
        """The same document without its body (kind and names kept): for keeping many results."""
        meta = {"name": self.name, "namespace": self.namespace}
        return Document(self.source, self.line, {"kind": self.kind, "metadata": meta},
                        self.operation, self.sub_resource)

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        meta = self.obj.get("metadata")
        return str(meta.get("name", "")) if isinstance(meta, dict) else ""

    @property
    def namespace(self) -> str:
        meta = self.obj.get("metadata")
        return str(meta.get("namespace", "") or "") if isinstance(meta, dict) else ""


def split_yaml(text: str) -> Iterator[tuple[int, str]]:
    """(1-based first line, text) of each ``---``-separated document (used by tests)."""
    start, line = 0, 1
    for m in _SEPARATOR.finditer(text):
        yield line, text[start:m.start()]
        line += text.count("\n", start, m.end()) + 1
        start = m.end() + 1
    yield line, text[start:]


class _Fallback(Exception):
    """A construct the fast builder leaves to PyYAML's own constructor."""


def _build(node: Any, loader: Any) -> Any:
    """The value of a composed node, as SafeConstructor would build it, minus its overhead:
    plain strings, lists and dicts directly; every other scalar through the constructor."""
    kind = type(node)
    if kind is ScalarNode:
        if node.tag == _STR:
            return node.value
        direct = _SCALARS.get(node.tag)  # SafeConstructor's own methods, minus its bookkeeping
        return getattr(loader, direct)(node) if direct else loader.construct_object(node)
    if kind is SequenceNode and node.tag == _SEQ:
        return [_build(n, loader) for n in node.value]
    if kind is not MappingNode or node.tag != _MAP:
        raise _Fallback
    out = {}
    for key, value in node.value:
        if type(key) is not ScalarNode or key.tag == _MERGE:
            raise _Fallback
        out[_build(key, loader)] = _build(value, loader)
    return out


def _construct(node: Any, loader: Any) -> Any:
    try:
        return _build(node, loader)
    except (_Fallback, RecursionError, TypeError):
        return loader.construct_document(node)  # merge keys, tags, odd keys: the full path
    finally:
        loader.constructed_objects = {}
        loader.recursive_objects = {}


def yaml_documents(source: str, text: str, *, fast: bool = True) -> Iterator[tuple[int, Any]]:
    """Every document of a YAML stream with its first line (comments skipped), as PyYAML's
    safe loader reads them; ``fast`` lets ``fast_yaml`` read the documents it provably reads
    the same way, and PyYAML the rest (and every file with an error)."""
    if fast:
        docs = fast_yaml.documents(text, lambda chunk: list(_pyyaml_docs(source, chunk)))
        if docs is not None:
            yield from docs
            return
    yield from _pyyaml_docs(source, text)


def _pyyaml_docs(source: str, text: str) -> Iterator[tuple[int, Any]]:
    """Every document of a YAML stream with its first line (comments skipped), one parser."""
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            try:
                data = _construct(node, loader)
            except (ValueError, OverflowError) as exc:  # PyYAML's int('0b_', 2), say
                raise ReadError(source, node.start_mark.line + 1,
                                f"invalid YAML: cannot construct a value: {exc}") from None
            if data is not None:
                yield node.start_mark.line + 1, data
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = mark.line + 1 if mark is not None else None
        raise ReadError(source, at, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ReadError(source, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _json_doc(source: str, text: str) -> Iterator[tuple[int, Any]]:
    try:
        yield 1, orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ReadError(source, exc.lineno, f"invalid JSON: {exc.msg}") from None


def _objects(source: str, line: int, data: Any) -> Iterator[Document]:
    if isinstance(data, list):
        for item in data:
            yield from _objects(source, line, item)
        return
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise ReadError(source, line, "expected a Kubernetes object (a mapping with 'kind')")
    kind = data["kind"]
    if kind.endswith("List") and isinstance(data.get("items"), list):
        yield from _objects(source, line, data["items"])
    elif kind == "AdmissionReview":
        yield _review(source, line, data)
    else:
        yield Document(source, line, data)


def _review(source: str, line: int, data: dict[str, Any]) -> Document:
    req = data.get("request")
    if not isinstance(req, dict) or not isinstance(req.get("object"), dict):
        raise ReadError(source, line, "AdmissionReview without request.object")
    return Document(source, line, req["object"], str(req.get("operation", "CREATE")),
                    str(req.get("subResource", "") or ""),
                    {k: req[k] for k in ("oldObject",) if k in req})


def read_text(source: str, text: str) -> Iterator[Document]:
    stripped = text.lstrip()
    docs = _json_doc(source, text) if stripped[:1] in ("{", "[") else yaml_documents(source, text)
    for line, data in docs:
        yield from _objects(source, line, data)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    return [path]


def read_paths(paths: Iterable[str], stdin: TextIO | None = None) -> Iterator[Document]:
    """Every document under ``paths`` (``-`` is stdin), in order; ReadError on the first bad one.

    Callers that want to go on after an error use ``read_sources`` instead.
    """
    for source, text in sources(paths, stdin):
        yield from read_text(source, text)


def sources(paths: Iterable[str], stdin: TextIO | None = None) -> Iterator[tuple[str, str]]:
    """(name, text) of every input file; missing or unreadable files raise ReadError."""
    for raw in paths:
        if raw == "-":
            if stdin is None:
                raise ReadError("-", None, "stdin is not available")
            yield "-", stdin.read()
            continue
        path = Path(raw)
        if not path.exists():
            raise ReadError(raw, None, "no such file or folder")
        for file in _files(path):
            try:
                yield str(file), file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ReadError(str(file), None, f"cannot read: {exc}") from None
