"""The yaml_rs fast path reads every input exactly as PyYAML's safe loader does: the same
documents, values and first lines, and the same error (file, line, message) for bad input.

Each property compares ``yaml_documents(fast=True)`` with the PyYAML-only path
(``fast=False``, itself checked against ``yaml.safe_load_all`` here and in
test_check_engine.py) on generated manifests: tricky scalars written plain, quoted and in
block or flow style, numbers YAML 1.1 and 1.2 read differently, and random edits that break
the YAML.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.check import fast_yaml
from corral.check.read import ReadError, yaml_documents

# plain scalars on which YAML 1.1 (PyYAML) and 1.2 (yaml_rs) may disagree, or that look close
TRICKY = [
    "yes", "Yes", "YES", "no", "No", "on", "On", "OFF", "off", "y", "n", "true", "True", "TRUE",
    "false", "FALSE", "null", "Null", "NULL", "~", "0", "00", "07", "0777", "-0777", "+0777",
    "08", "09", "0o17", "0O17", "0x1F", "-0x1F", "+0x1f", "0b101", "-0b1", "1_000", "_1", "1__0",
    "10_", "+1", "-1", "-0", "+0", "12:30", "-1:30:00", "190:20:30.15", "1e3", "1E3", "1.0e3",
    "1.0e+3", "-.5", "+.5", ".5", "1.", "0.", "1.5", "3.14_15", ".inf", "-.inf", ".Inf", ".NaN",
    "NaN", "inf", "2026-11-26", "2026-11-26T10:00:00Z", "2026-1-5 1:2:3", "<<", "=", "-", "+",
    "0x", "0b", "0o", "123456789012345678901234567890", "9223372036854775808", "1:2", "0:0",
    "sha256:0abc", "ALL", "RuntimeDefault", "500m", "256Mi", "1.4", "10.0.0.1", "a b", "a:b",
]
KEYS = ["kind", "name", "image", "yes", "on", "1", "0777", "1_0", "true", "null", "<<", "~",
        "a b", "2026-11-26", "x"]

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=False), st.text(max_size=10), st.sampled_from(TRICKY),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(KEYS) | st.text(min_size=1, max_size=6), inner, max_size=4),
    max_leaves=16)
STYLES = st.fixed_dictionaries({
    "default_flow_style": st.sampled_from([False, True, None]),
    "default_style": st.sampled_from([None, '"', "'", "|", ">"]),
    "width": st.sampled_from([12, 80]),
    "allow_unicode": st.booleans(),
    "explicit_start": st.booleans(),
    "indent": st.sampled_from([2, 4]),
})


def outcome(text: str, fast: bool) -> Any:
    """The documents with their lines, or the error (line and message) they end in."""
    docs: list[tuple[int, Any]] = []
    try:
        docs.extend(yaml_documents("f.yaml", text, fast=fast))
    except ReadError as exc:
        return docs, (exc.line, exc.message)
    return docs, None


def assert_same(text: str) -> None:
    assert outcome(text, fast=True) == outcome(text, fast=False), text


@settings(max_examples=int(os.environ.get("FAST_YAML_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(VALUES, min_size=1, max_size=3), style=STYLES,
       comments=st.lists(st.sampled_from(["", "# c\n", "\n", "  # x: 1\n"]), min_size=3,
                         max_size=3))
def test_dumped_manifests_read_alike(docs: list[Any], style: dict[str, Any],
                                     comments: list[str]) -> None:
    parts = [comments[i % 3] + yaml.safe_dump({"kind": "Pod", "v": d}, **style)
             for i, d in enumerate(docs)]
    text = "---\n".join(parts)
    assert_same(text)
    loaded = [d for d in yaml.safe_load_all(text) if d is not None]
    assert [v for _, v in outcome(text, fast=True)[0]] == loaded


PLAIN_CONTEXTS = [
    "kind: Pod\nv: {t}\n", "kind: Pod\nv:\n- {t}\n- x\n", "kind: Pod\nv: [{t}, x]\n",
    "kind: Pod\nv: {{k: {t}}}\n", 'kind: Pod\nv: {{"k":{t}}}\n', "kind: Pod\n{t}: v\n",
    "kind: Pod\nv: [x,{t}]\n", "kind: Pod\nv:\n  {t}\n", "kind: Pod\nv: a\n  {t}\n",
    "kind: Pod\nv: '{t}'\n", 'kind: Pod\nv: "{t}"\n', "kind: Pod\nv: |\n  {t}\n",
    "kind: Pod\n---\nkind: Pod\nv: {t}\n", "kind: Pod\nv: !!str {t}\n",
    "kind: Pod\nv: &a {t}\nw: *a\n", "kind: Pod\nv: -{t}\n", "{t}\n", "{t}: v\n",
    "kind: Pod\n---\n{t}\n", "- {t}\n", "kind: Pod\nv: []\nw: {{}}\nx: {t}\n",
]


@settings(max_examples=int(os.environ.get("FAST_YAML_EXAMPLES", "400")), deadline=None)
@given(token=st.sampled_from(TRICKY) | st.from_regex(r"[-+]?[0-9_.:oxbeE]{1,6}", fullmatch=True),
       context=st.sampled_from(PLAIN_CONTEXTS))
def test_tricky_plain_scalars_read_alike(token: str, context: str) -> None:
    if "nan" in token.lower():
        return  # nan != nan; .NaN goes to PyYAML as every float does
    assert_same(context.format(t=token))


@pytest.mark.parametrize("text", [
    "kind: Pod\nv: 0777\n",                      # 511 in YAML 1.1, 777 in 1.2
    "kind: Pod\nv: _1\n",                        # a string in 1.1; yaml_rs reads 1
    "kind: Pod\nv: 0o17\n",                      # a string in 1.1, 15 in 1.2
    "kind: Pod\nv: yes\n", "kind: Pod\nv: 1e3\n", "kind: Pod\nv: -.5\n",
    "\tkind: Pod\n",                             # tab indentation: libyaml refuses it
    "kind: Pod\r\nv: 1\r\n---\r\nkind: Pod\r\n",  # CRLF: not split here
    "%YAML 1.1\n---\nkind: Pod\n", "kind: Pod\n...\n---\nkind: Pod\n",
    "--- {kind: Pod}\n---\nkind: Pod\n", "---\n---\n# only a comment\n---\nkind: Pod\n",
    "kind: Pod\n---\nkind: [\n", "kind: Pod\nv: =\n", "kind: Pod\nv: !custom 1\n",
    "kind: Pod\n? [a]\n: 1\n", "kind: Pod\na: 1\na: 2\n", "\ufeffkind: Pod\n",
    "kind: Pod\nv: 'x\n---\nkind: Pod\n", "kind: Pod\nv: |\n  a\n---\n  b\n",
    "---- x\nkind: Pod\n", "kind: Pod\n----\n", "# c\n\n  kind: Pod\n---   # c\n\nkind: D\n",
    "kind: Pod\nv: 'a\x85b'\n", 'kind: Pod\nv: "a\u2028b"\n', "kind: Pod\nv: a\x01b\n",
    "kind: Pod\nv: 0b_\n", "0777\n", "kind: Pod\n---\n0777\n",
])
def test_edge_cases_read_alike(text: str) -> None:
    assert_same(text)


BASE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: agent-1
  namespace: ai-workloads
  annotations: {note: "on", mode: '0644'}
spec:
  replicas: 2
  template:
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 10001}
      containers:
      - name: c0
        image: ghcr.io/corral-dev/tool@sha256:0123abcd
        args: ["--port", 8080, yes]
        securityContext:
          capabilities:
            drop:
            - ALL
        resources:
          limits: {cpu: 500m, memory: 256Mi}
---
kind: Pod
metadata: {name: p}
spec:
  containers:
  - {name: c, image: nginx}
"""
BLOCK = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: agent-1
  labels:
    app: research-agent
spec:
  replicas: 2
  template:
    spec:
      securityContext:
        runAsUser: 10001
      containers:
      - name: c0
        image: ghcr.io/corral-dev/tool@sha256:abcd
        args:
        - --port
        - 8080
        env:
        - name: MODE
          value: "fast"
        command: |
          run it
        securityContext:
          capabilities:
            drop:
            - ALL
# trailing comment
---
kind: Pod
metadata:
  name: p
"""
EDITS = ["\t", ":", " ", "-", "'", '"', "#", "&", "*", "!", "\n", "0", "_", "[", "{", ",",
         "---\n", "  ", "|", ">", "?", "%", "\\", "@", "`"]


@settings(max_examples=int(os.environ.get("FAST_YAML_EXAMPLES", "400")), deadline=None)
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 4), base=st.sampled_from([BASE, BLOCK]))
def test_broken_manifests_fail_alike(seed: int, edits: int, base: str) -> None:
    rng, text = random.Random(seed), base
    for _ in range(edits):
        at = rng.randrange(len(text))
        if rng.random() < 0.3:
            text = text[:at] + text[at + rng.randint(1, 3):]
        else:
            text = text[:at] + rng.choice(EDITS) + text[at:]
    assert_same(text)


def test_block_style_manifests_take_the_fast_path() -> None:
    """Manifests as kubectl and yaml.dump write them do not fall back (or there is no gain)."""
    docs = list(yaml.safe_load_all(BASE))
    docs[0]["metadata"]["annotations"] = {"note": "x"}
    docs[0]["spec"]["template"]["spec"]["containers"][0]["args"] = ["--port", 8080]
    docs[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/c/t@sha256:abc0"
    text = "# generated\n" + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
    parts = fast_yaml.chunks(text)
    assert parts is not None and len(parts) == 2
    for _, chunk in parts:
        fast_yaml._fast(chunk)  # raises _Unsure if it would go to PyYAML
    second = text.split("---\n")[0].count("\n") + 2
    assert list(yaml_documents("f.yaml", text)) == [(2, docs[0]), (second, docs[1])]


def test_a_scalar_pyyaml_cannot_construct_is_a_read_error_with_its_line() -> None:
    for fast in (True, False):
        with pytest.raises(ReadError) as exc:
            list(yaml_documents("f.yaml", "kind: Pod\n---\nkind: Pod\nv: 0b_\n", fast=fast))
        assert exc.value.line == 3
