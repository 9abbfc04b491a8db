"""Apply review suggestions to ``corral.yaml`` text, keeping its comments, order and formatting.

Sits after ``suggest.py``: a ruamel.yaml round-trip edit of the policy text (the indentation is
detected by finding the settings that reproduce the file unchanged), a unified diff for
``--suggest``, and an atomic write for ``--apply`` that happens only when the edited policy
validates (``corral.model.load.parse_policy``). The Falco exceptions go to a separate rules file.
"""

from __future__ import annotations

import difflib
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from corral.learn.falco_tuning import rules_file_entries
from corral.learn.report import FalcoException
from corral.learn.suggest import Suggestion
from corral.model.load import parse_policy

# (mapping, sequence, offset) layouts people write; the first that round-trips the file wins
_LAYOUTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (2, 3, 1))


@dataclass(frozen=True, slots=True)
class Edit:
    """The result of applying suggestions to a policy text."""

    text: str
    applied: tuple[Suggestion, ...]
    held_back: tuple[Suggestion, ...]  # risky ones, without --include-risky


def _yaml(layout: tuple[int, int, int]) -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=layout[0], sequence=layout[1], offset=layout[2])
    return y


def dump(y: YAML, doc: Any) -> str:
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def round_trip(text: str) -> tuple[YAML, Any]:
    """The loader whose dump reproduces ``text`` (fewest changed lines if none is exact)."""
    best: tuple[int, YAML, Any] | None = None
    for layout in _LAYOUTS:
        y = _yaml(layout)
        doc = y.load(text)
        changed = sum(1 for line in difflib.ndiff(text.splitlines(), dump(y, doc).splitlines())
                      if line[:1] in "+-")
        if changed == 0:
            return y, doc
        if best is None or changed < best[0]:
            best = (changed, y, doc)
    assert best is not None
    return best[1], best[2]


def agent_node(doc: Any, name: str) -> CommentedMap:
    for node in doc["spec"]["agents"]:
        if node.get("name") == name:
            return node  # type: ignore[no-any-return]
    raise KeyError(f"agent {name!r} is not in the policy")


def _seq(egress: CommentedMap, field: str) -> CommentedSeq:
    if field not in egress or egress[field] is None:
        egress[field] = CommentedSeq()
    return egress[field]  # type: ignore[no-any-return]


def _egress(agent: CommentedMap) -> CommentedMap:
    if "egress" not in agent or agent["egress"] is None:
        agent["egress"] = CommentedMap()
    return agent["egress"]  # type: ignore[no-any-return]


def _apply_one(doc: Any, s: Suggestion, note: str) -> bool:
    """Change the document for one suggestion; False when there was nothing to change."""
    egress = _egress(agent_node(doc, s.agent))
    if s.kind == "enforce":
        if egress.get("mode") == "enforce":
            return False
        egress["mode"] = "enforce"
        return True
    seq = _seq(egress, s.field)
    present = [i for i, v in enumerate(seq) if str(v) == s.value]
    if s.kind == "narrow-allow":
        return _narrow(seq, present, s.replacement)
    if s.kind == "remove-allow":
        for i in reversed(present):
            delete(seq, i)
        return bool(present)
    if present:
        return False
    append(seq, DoubleQuotedScalarString(s.value) if s.value.startswith("*") else s.value, note)
    return True


def _narrow(seq: CommentedSeq, present: list[int], hosts: Sequence[str]) -> bool:
    """Replace a wildcard item in place by its hosts (its comment stays on the first)."""
    if not present or not hosts:
        return False
    i = present[0]
    kept = {str(v) for v in seq}
    new = [h for h in hosts if h not in kept]
    if not new:
        delete(seq, i)
        return True
    seq[i] = new[0]
    for offset, h in enumerate(new[1:], 1):
        seq.insert(i + offset, h)
    return True


def _split_tail(seq: CommentedSeq, idx: int) -> str:
    """Detach the comment lines after item ``idx`` (they introduce what follows the list;
    ruamel keeps them on the list's last item) and return them."""
    entry = seq.ca.items.get(idx)
    if not entry or entry[0] is None:
        return ""
    token = entry[0]
    head, newline, rest = token.value.partition("\n")
    if not rest:
        return ""
    if head:
        token.value = head + newline
    else:
        seq.ca.items.pop(idx)
    return str(rest)


def _attach_tail(seq: CommentedSeq, idx: int, tail: str) -> None:
    if not tail or idx < 0:
        return
    entry = seq.ca.items.get(idx)
    if entry and entry[0] is not None:
        token = entry[0]
        token.value = (token.value if token.value.endswith("\n") else token.value + "\n") + tail
    else:
        seq.ca.items[idx] = [CommentToken("\n" + tail, CommentMark(0), None), None, None, None]


def append(seq: CommentedSeq, value: str, note: str) -> None:
    if seq.fa.flow_style():  # [a, b]: no room for a comment per item
        seq.append(value)
        return
    tail = _split_tail(seq, len(seq) - 1)
    seq.append(value)
    seq.yaml_add_eol_comment(f"# {note}", len(seq) - 1)
    _attach_tail(seq, len(seq) - 1, tail)


def delete(seq: CommentedSeq, idx: int) -> None:
    tail = _split_tail(seq, idx) if idx == len(seq) - 1 else ""
    del seq[idx]
    _attach_tail(seq, len(seq) - 1, tail)


def apply_suggestions(text: str, chosen: Sequence[Suggestion], *, include_risky: bool = False,
                      note: str = "added by corral review") -> Edit:
    """Edit the policy text; risky suggestions are held back unless ``include_risky``."""
    y, doc = round_trip(text)
    applied, held = [], []
    for s in chosen:
        if s.risky and not include_risky:
            held.append(s)
        elif _apply_one(doc, s, note):
            applied.append(s)
    return Edit(dump(y, doc) if applied else text, tuple(applied), tuple(held))


def unified_diff(old: str, new: str, path: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        fromfile=f"a/{path}", tofile=f"b/{path}"))


def validate(text: str, path: str) -> None:
    """Raise ``PolicyError`` (every problem listed) when the edited policy does not load."""
    parse_policy(text, path)


def write_policy(path: str | Path, text: str) -> None:
    """Validate the edited policy, then replace the file; nothing is written when invalid."""
    validate(text, str(path))
    write_atomic(path, text)


def write_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (same directory, same permissions)."""
    target = Path(path)
    mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def falco_rules_text(exceptions: Sequence[FalcoException], existing: str | None = None) -> str:
    """A Falco rules file appending the exceptions; merged with an ``existing`` file's items
    (exceptions already there, by rule and name, are kept once)."""
    items: list[dict[str, Any]] = []
    if existing:
        try:
            loaded = yaml.safe_load(existing)
        except yaml.YAMLError as exc:
            raise ValueError(f"the existing Falco rules file is not valid YAML: {exc}") from None
        if not isinstance(loaded, list):
            raise ValueError("the existing Falco rules file is not a list of rules items")
        items = loaded
    by_rule = {i.get("rule"): i for i in items if isinstance(i, dict)}
    for entry in rules_file_entries(exceptions):
        current = by_rule.get(entry["rule"])
        if current is None:
            items.append(entry)
            by_rule[entry["rule"]] = entry
            continue
        names = {e.get("name") for e in current.get("exceptions", [])}
        current.setdefault("exceptions", []).extend(
            e for e in entry["exceptions"] if e["name"] not in names)
    header = ("# Falco exceptions suggested by `corral review` for recurring benign patterns.\n"
              "# Load after corral's rules (falco -r rules.yaml -r this.yaml).\n")
    return header + yaml.safe_dump(items, sort_keys=False, width=4096)
