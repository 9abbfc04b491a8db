"""Suite-wide test settings: no test run changes the next one or writes into the checkout.

Hypothesis keeps no example database (a saved failing example would make every later run in the
same checkout replay it: CI must depend on the code and the seed only; ``-p no:cacheprovider``
does not cover hypothesis), and its other caches (Unicode tables, constants found in the source)
go to a temporary folder removed at the end of the session instead of ``.hypothesis/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import settings

settings.register_profile("corral", database=None)
settings.load_profile("corral")

_STORAGE = tempfile.mkdtemp(prefix="corral-hypothesis-")
os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _STORAGE


def pytest_sessionfinish(session: pytest.Session) -> None:
    shutil.rmtree(_STORAGE, ignore_errors=True)
