"""Fixtures for the attack tests: the control-plane ones (a plane on tmp state, a hand-moved
clock) and ``serve``, a ``corral serve`` process with both tokens whose stderr must stay free
of tracebacks."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control.conftest import clock, make_plane
from tests.security.serve import Serve, assert_no_traceback

__all__ = ["clock", "make_plane", "serve"]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    s = Serve(tmp_path).wait_up()
    yield s
    s.stop()
    assert_no_traceback(s)
