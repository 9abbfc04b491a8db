"""A policy file built to break the loader (issue 10, item 6): 5,000-deep nesting raises
RecursionError in a parser. The gateway keeps the old policy, counts the failure, and its
watcher goes on to load the next good file; ``corral validate`` prints an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from corral.gateway.testing import GatewayProcess, StaticDns
from tests.gateway.helpers import agent, make_policy, request
from tests.security.policy_bed import Counter, counter, eventually, loop_dns, no_traceback

__all__ = ["counter", "loop_dns"]  # fixtures
DEEP = "apiVersion: corral.dev/v1alpha1\nkind: Policy\nspec: " + "[" * 5000 + "]" * 5000 + "\n"



def test_deep_nesting_keeps_the_old_policy_and_the_watcher(loop_dns: StaticDns,
                                                           counter: Counter) -> None:
    url = f"http://allowed.test:{counter.port}/"
    policy = make_policy(agent("a", allow=[f"other.test:{counter.port}"],
                               resolve_into=["127.0.0.0/8"]))
    with GatewayProcess(policy, resolver=loop_dns.address) as gw:
        good = yaml.safe_load(gw.policy_path.read_text())
        gw.policy_path.write_text(DEEP)
        assert eventually(lambda: b'reloads_total{result="error"} 1.0' in gw.admin("/metrics")[1])
        assert "refused" in gw.stderr()
        good["spec"]["agents"][0]["egress"]["allow"] = [f"allowed.test:{counter.port}"]
        gw.policy_path.write_text(yaml.safe_dump(good))

        def allowed() -> bool:
            try:
                request(gw.ports["a"], "GET", url)
            except OSError:  # the counter closes without an answer: it was dialled
                return True
            return counter.accepted > 0

        assert eventually(allowed)
        assert counter.accepted >= 1
        no_traceback(gw)


def test_validate_reports_deep_nesting_as_an_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(DEEP)
    out = subprocess.run([sys.executable, "-m", "corral", "validate", "-f", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and "nested 5000 levels deep" in out.stdout + out.stderr
