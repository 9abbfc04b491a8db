"""Without root or iproute2 the test bed says why, so the netns tier skips with a clear reason.

These run everywhere (no namespaces needed): they fake the two preconditions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.verify import netns


def test_not_root_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    reason = netns.unavailable_reason()
    assert reason is not None and "root" in reason


def test_missing_iproute2_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda _name: None)
    reason = netns.unavailable_reason()
    assert reason is not None and "iproute2" in reason


def test_dnsmasq_argv_answers_only_given_names(tmp_path: Path) -> None:
    argv = netns.dnsmasq_argv(listen="10.0.0.1", workdir=tmp_path,
                              host_records={"a.test": "1.2.3.4"},
                              forwards={"r.test": "10.0.0.1#5353"})
    assert {"--no-resolv", "--no-hosts", "--keep-in-foreground"} <= set(argv)
    assert "--host-record=a.test,1.2.3.4" in argv
    assert "--server=/r.test/10.0.0.1#5353" in argv
    assert any(a.startswith("--pid-file=") for a in argv)
