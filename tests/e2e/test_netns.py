"""The test bed library itself: unique names, cleanup on error, stale cleanup."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from corral.verify import netns

pytestmark = pytest.mark.netns


@pytest.fixture(autouse=True)
def _needs_netns() -> None:
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)


def test_bed_removes_namespaces_and_processes_even_when_the_body_raises(tmp_path: Path) -> None:
    names: list[str] = []
    proc_pid = 0
    with pytest.raises(RuntimeError, match="boom"), netns.TestBed(tmp_path) as bed:
        a, b = bed.namespace("one"), bed.namespace("two")
        names = [a.name, b.name]
        bed.link((a, "a0", "10.9.0.1/30"), (b, "b0", "10.9.0.2/30"))
        proc = bed.start(b, "sleeper", ["sleep", "30"])
        proc_pid = proc.pid
        assert set(names) <= set(netns.list_namespaces())
        raise RuntimeError("boom")
    assert not set(names) & set(netns.list_namespaces())
    with pytest.raises(ProcessLookupError):
        os.kill(proc_pid, 0)


def test_two_beds_get_distinct_names(tmp_path: Path) -> None:
    with netns.TestBed(tmp_path / "a") as one, netns.TestBed(tmp_path / "b") as two:
        assert one.namespace("x").name != two.namespace("x").name


def test_entered_sockets_live_in_the_namespace(tmp_path: Path) -> None:
    with netns.TestBed(tmp_path) as bed:
        a, b = bed.namespace("one"), bed.namespace("two")
        bed.link((a, "a0", "10.9.0.1/30"), (b, "b0", "10.9.0.2/30"))
        server = b.make_socket()
        server.bind(("10.9.0.2", 0))
        server.listen()
        port = server.getsockname()[1]
        a.connect("10.9.0.2", port, timeout=2).close()
        with pytest.raises(OSError):  # the host namespace has no such link
            socket.create_connection(("10.9.0.2", port), timeout=1).close()
        server.close()


def test_cleanup_stale_removes_namespaces_of_dead_creators(tmp_path: Path) -> None:
    script = (
        "import pathlib, os, sys; from corral.verify import netns; "
        f"bed = netns.TestBed(pathlib.Path({str(tmp_path)!r})); bed.__enter__(); "
        # flush before os._exit: stdout is a pipe here, block-buffered unless PYTHONUNBUFFERED
        "print(bed.namespace('orphan').name, flush=True); os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, check=True)
    orphan = out.stdout.strip()
    assert orphan in netns.list_namespaces()
    assert orphan in netns.cleanup_stale()
    assert orphan not in netns.list_namespaces()


def test_namespace_role_is_validated(tmp_path: Path) -> None:
    with netns.TestBed(tmp_path) as bed, pytest.raises(ValueError, match="role"):
        bed.namespace("Bad Role!")
