"""Corpus agreement: for every Gatekeeper-library case corral covers, corral's verdict (the
compiled CEL through ``corral check``'s engine, and the compiled Rego through regopy) equals the
library's expected verdict. Uncovered cases are listed with a reason in corpus.UNCOVERED."""

from __future__ import annotations

from functools import cache

import pytest

from corral.check.engine import Checker
from corral.check.read import read_text
from corral.model.admission import Controls
from tests.admission.corpus import CORPUS, MAPPING, UNCOVERED, Case, cases
from tests.admission.helpers import make_policy
from tests.admission.rego_runner import RegoEngine

pytestmark = [pytest.mark.engine,
              pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not at {CORPUS}")]

ALL_CASES = list(cases()) if CORPUS.is_dir() else []
COVERED = [c for c in ALL_CASES if (c.suite, c.sample) in MAPPING]

# Where corral is deliberately stricter than the library's constraint (refuses, never admits).
STRICTER: dict[str, str] = {}


@cache
def engines(suite: str, sample: str) -> tuple[Checker, RegoEngine]:
    settings, registries = MAPPING[(suite, sample)]
    controls = dict.fromkeys(Controls.model_fields, False) | settings
    policy = make_policy({"controls": controls}, registries=registries)
    return Checker(policy, all_namespaces=True), RegoEngine(policy)


def test_every_case_is_mapped_or_explained() -> None:
    keys = {(c.suite, c.sample) for c in ALL_CASES}
    assert keys == set(MAPPING) | set(UNCOVERED)
    assert not set(MAPPING) & set(UNCOVERED)
    assert len(ALL_CASES) >= 100 and len(COVERED) >= 60


@pytest.mark.parametrize("case", COVERED, ids=lambda c: c.id)
def test_corral_agrees_with_library(case: Case) -> None:
    checker, rego = engines(case.suite, case.sample)
    docs = list(read_text(str(case.path), case.path.read_text()))
    assert len(docs) == 1
    doc = docs[0]
    outcome = checker.check(doc)
    assert outcome.skipped is None, outcome.skipped
    cel_violates = bool(outcome.violations)
    rego_violates = bool(rego.violations(doc.obj, doc.operation, doc.sub_resource))
    assert cel_violates == rego_violates, "CEL and Rego disagree"
    if case.id in STRICTER:
        assert cel_violates and not case.violates
    else:
        assert cel_violates == case.violates, [v.message for v in outcome.violations]
