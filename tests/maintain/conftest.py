"""The fleet of ``fleet.py`` written to disk once per test that needs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.maintain import fleet


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder with corral.yaml, k8s/ manifests, dump.json, behaviour.db and control.db."""
    (tmp_path / "corral.yaml").write_text(fleet.POLICY)
    (tmp_path / "last-quarter.yaml").write_text(fleet.POLICY_LAST_QUARTER)
    fleet.write_manifests(tmp_path / "k8s")
    fleet.write_dump(tmp_path / "dump.json")
    fleet.behaviour_store(tmp_path / "behaviour.db")
    fleet.control_store(tmp_path / "control.db")
    return tmp_path
