"""The control-plane fixtures (a plane on tmp state, a hand-moved clock) for the attack tests."""

from tests.control.conftest import clock, make_plane

__all__ = ["clock", "make_plane"]
