"""corral run: the plan (pure) and, as root, a command that can reach only its agent's listener."""

from __future__ import annotations

import copy
import http.server
import ipaddress
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from corral.model.load import parse_policy
from corral.verify import run as run_mod

ROOT = Path(__file__).resolve().parents[2]
SUBNET = "10.239.201.0/30"
DOC = {
    "apiVersion": "corral.dev/v1alpha1", "kind": "Policy", "metadata": {"name": "runtest"},
    "spec": {
        "namespace": "ai-workloads",
        "gateway": {"base_port": 18480, "admin_port": 18490},
        "agents": [
            {"name": "research", "selector": {"app": "research"},
             "egress": {"allow": ["allowed.test"], "resolve_into": [SUBNET]}},
            {"name": "other", "selector": {"app": "other"}},
        ],
    },
}
POLICY = parse_policy(yaml.safe_dump(DOC), "runtest.yaml")[0]


def test_plan_is_exact_and_has_no_side_effects() -> None:
    p = run_mod.plan(POLICY, "research", ["curl", "https://allowed.test"],
                     policy_path="p.yaml", log="a.log", tag="0a0b0c",
                     subnet=ipaddress.IPv4Network(SUBNET), uid=1000, gid=1000, python="py")
    assert (p.host_ip, p.ns_ip, p.port) == ("10.239.201.1", "10.239.201.2", 18480)
    assert p.setup[0] == ("ip", "netns", "add", "crlrun-0a0b0c")
    assert ("ip", "link", "add", "crl0a0b0ch", "type", "veth", "peer", "name", "crl0a0b0ca",
            "netns", "crlrun-0a0b0c") in p.setup
    assert not any("route" in step for step in p.setup)  # no default route: nowhere to go
    assert p.gateway[:4] == ("py", "-m", "corral", "gateway")
    assert p.gateway[p.gateway.index("--listen") + 1] == "10.239.201.1"
    assert p.command == ("ip", "netns", "exec", "crlrun-0a0b0c", "setpriv",
                         "--reuid=1000", "--regid=1000", "--init-groups", "--no-new-privs",
                         "--", "curl", "https://allowed.test")
    assert p.env["HTTPS_PROXY"] == p.env["http_proxy"] == "http://10.239.201.1:18480"
    assert 'iifname "crl0a0b0ch" tcp dport 18480 accept' in p.nft
    assert 'iifname "crl0a0b0ch" counter drop' in p.nft
    assert "chain forward" in p.nft
    with pytest.raises(run_mod.RunError, match="nothing to run"):
        run_mod.plan(POLICY, "research", [], policy_path="p", log="l")


def test_subnets_stay_in_the_pool() -> None:
    for tag in ("000000", "ffffff", "123abc"):
        net = run_mod.subnet_for(tag)
        assert net.prefixlen == 30 and net.subnet_of(run_mod.DEFAULT_POOL)


def test_without_root_the_reason_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = run_mod.unavailable_reason()
    assert reason is not None and "needs root" in reason and "sudo" in reason


@pytest.fixture
def origin() -> Iterator[int]:
    """An HTTP server in the root namespace: reachable only through the gateway."""
    httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield int(httpd.server_address[1])
    httpd.shutdown()


AGENT = """
import json, os, socket, urllib.request
out = {"uid": os.getuid(), "proxy": os.environ["HTTPS_PROXY"], "direct": {}}
for host, port in [("HOST", 18490), ("HOST", 18481), ("HOST", ORIGIN),
                   ("192.0.2.1", 443), ("127.0.0.1", ORIGIN)]:
    try:
        socket.create_connection((host, port), timeout=1).close()
        out["direct"][f"{host}:{port}"] = "open"
    except OSError as e:
        out["direct"][f"{host}:{port}"] = type(e).__name__
proxies = urllib.request.ProxyHandler({"http": os.environ["HTTP_PROXY"]})
opener = urllib.request.build_opener(proxies)
for url in ("http://HOST:ORIGIN/", "http://denied.test/"):
    try:
        out[url] = opener.open(url, timeout=5).status
    except urllib.error.HTTPError as e:
        out[url] = [e.code, e.headers.get("X-Corral-Reason")]
print(json.dumps(out))
"""


@pytest.mark.netns
@pytest.mark.skipif(run_mod.unavailable_reason() is not None,
                    reason=run_mod.unavailable_reason() or "")
def test_the_command_reaches_only_its_listener(tmp_path: Path, origin: int) -> None:
    subnet = free_subnet()
    host = str(subnet[1])
    doc = copy.deepcopy(DOC)
    doc["spec"]["agents"][0]["egress"]["allow"].append(f"{host}:{origin}")
    doc["spec"]["agents"][0]["egress"]["resolve_into"] = [str(subnet)]
    policy = tmp_path / "corral.yaml"
    policy.write_text(yaml.safe_dump(doc))
    log = tmp_path / "access.log"
    code = AGENT.replace("ORIGIN", str(origin)).replace("HOST", host)
    done = subprocess.run([sys.executable, "-m", "corral", "run", "--agent", "research",
                           "-f", str(policy), "--subnet", str(subnet), "--log", str(log),
                           "--user", "65534:65534", "--", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["uid"] == 65534 and out["proxy"] == f"http://{host}:18480"
    assert all(v != "open" for v in out["direct"].values()), out["direct"]
    assert out[f"http://{host}:{origin}/"] == 200  # allowed CIDR, through the gateway
    assert out["http://denied.test/"] == [403, "not_in_allowlist"]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert {(x["agent"], x["decision"]) for x in lines} == {("research", "allow"),
                                                          ("research", "deny")}
    assert "1 allow, 1 deny" in done.stderr
    # everything of this run is gone: namespace, nftables table (another suite running at the
    # same time may have its own)
    tag = re.search(r"in namespace crlrun-([0-9a-f]+);", done.stderr)
    assert tag is not None, done.stderr
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=False).stdout
    assert f"crlrun-{tag[1]}" not in left
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=False).stdout
    assert f"corral_run_{tag[1]}" not in tables


def free_subnet() -> ipaddress.IPv4Network:
    """A /30 of 10.239.128.0/17 no interface uses, starting from this process's id, so two
    suites running at once on one machine pick different ones."""
    used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                          timeout=15, check=False).stdout
    base = int(ipaddress.IPv4Address("10.239.128.0"))
    for i in range(256):
        net = ipaddress.IPv4Network((base + 4 * ((os.getpid() + 97 * i) % 8192), 30))
        if f" {net[1]}/" not in used and f" {net[2]}/" not in used:
            return net
    pytest.fail("no free /30 in 10.239.128.0/17")


def test_cli_usage_errors_are_explained() -> None:
    example = str(ROOT / "examples" / "corral.yaml")
    for argv, needle in ((["--agent", "research", "-f", example], "nothing to run"),
                         (["--agent", "nobody", "-f", example, "--", "true"],
                          "no agent 'nobody'")):
        done = subprocess.run([sys.executable, "-m", "corral", "run", *argv],
                              capture_output=True, text=True, timeout=30, cwd=ROOT,
                              check=False)
        assert done.returncode == 2 and needle in done.stderr, done.stderr
