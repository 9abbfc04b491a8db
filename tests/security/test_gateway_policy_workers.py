"""Attacks through the multi-worker gateway (issue 10, items 5 and 9): secrets never on a
command line, and an access log nobody reads never stalls the workers."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import orjson

from corral.gateway.testing import GatewayProcess, StaticDns
from tests.gateway.helpers import agent, make_policy, request
from tests.security.policy_bed import eventually, loop_dns, no_traceback

__all__ = ["loop_dns"]  # fixtures
TOKEN = "s3cret-admin-token-4c1d"


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(c) for c in text)
    return out


def test_the_admin_token_is_on_no_command_line(tmp_path: Path, loop_dns: StaticDns) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    policy = make_policy(agent("a", allow=["allowed.test"]), agent("b", allow=["other.test"]))
    with GatewayProcess(policy, resolver=loop_dns.address,
                        extra_args=("--workers", "2", "--admin-token-file",
                                    str(token_file))) as gw:
        assert gw.proc is not None
        pids = [gw.proc.pid, *children(gw.proc.pid)]
        assert len(pids) == 3
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert TOKEN.encode() not in cmdline, pid
            assert TOKEN.encode() not in Path(f"/proc/{pid}/environ").read_bytes(), pid
        assert gw.admin_call("PUT", "/v1/quarantine/a")[0] == 401  # the token still guards
        no_traceback(gw)



def test_an_unread_log_pipe_never_stalls_the_workers(loop_dns: StaticDns) -> None:
    """The rendered container runs ``--workers 0 --log -``: here two workers log into a pipe
    nobody reads. Every request is still answered; /readyz turns 503 while the lines cannot
    be written, and 200 again once a reader drains them, which then reads whole lines only."""
    policy = make_policy(agent("a", allow=["allowed.test"]))
    with GatewayProcess(policy, resolver=loop_dns.address, log_to_pipe=True,
                        extra_args=("--workers", "2")) as gw:
        assert gw.proc is not None and gw.proc.stdout is not None
        for _ in range(10):  # 3,000 access lines: the 64 KiB pipe is full after ~200
            with socket.create_connection(("127.0.0.1", gw.ports["a"]), timeout=5) as s:
                for _ in range(300):
                    status, _, _ = request(0, "GET", "http://denied.test/", sock=s)
                    assert status == 403
        assert gw.admin("/healthz")[0] == 200
        assert eventually(lambda: gw.admin("/readyz")[0] == 503, timeout=20)
        out = bytearray()
        pipe = gw.proc.stdout
        reader = threading.Thread(target=lambda: out.extend(pipe.read()), daemon=True)
        reader.start()
        assert eventually(lambda: gw.admin("/readyz")[0] == 200, timeout=20)
        no_traceback(gw)
        gw.stop()
        reader.join(10)
    lines = bytes(out).splitlines()
    assert len(lines) == 3000
    assert all(orjson.loads(line)["host"] == "denied.test" for line in lines)
