"""Attacks through the multi-worker gateway (issue 10, items 5 and 9): secrets never on a
command line, and an access log nobody reads never stalls the workers."""

from __future__ import annotations

from pathlib import Path

from corral.gateway.testing import GatewayProcess, StaticDns
from tests.gateway.helpers import agent, make_policy
from tests.security.policy_bed import loop_dns, no_traceback

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
