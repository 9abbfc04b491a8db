"""Operations over the real CLI process: reload (SIGHUP, ConfigMap symlink swap, bad file),
drain on SIGTERM, --workers with SO_REUSEPORT, and ``corral up --check``."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from corral.decide import reasons
from corral.gateway.testing import (
    GatewayProcess,
    StaticDns,
    ThreadGateway,
    eventually,
    free_ports,
)
from corral.model import records as R
from tests.gateway.helpers import agent, connect, make_policy, request

LOOP = ["127.0.0.0/8"]


def quarantined(gw: GatewayProcess) -> list[str]:
    status, body = gw.admin_call("GET", "/v1/quarantine")
    assert status == 200, body
    names: list[str] = json.loads(body)["quarantined"]
    return names


@pytest.fixture()
def ports(origin_http: ThreadingHTTPServer, origin_https: ThreadingHTTPServer) -> tuple[int, int]:
    return origin_http.server_address[1], origin_https.server_address[1]


def policy_for(ports: tuple[int, int], *names: str) -> dict[str, object]:
    allow = [f"{n}:{p}" for n in names for p in ports]
    return make_policy(agent("a", allow=allow, allow_cidrs=LOOP), agent("b", allow=allow))


def tls_tunnel(port: int, https_port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    s, status, _ = connect(port, f"allowed.test:{https_port}")
    assert status == 200
    return ctx.wrap_socket(s, server_hostname="allowed.test")


def get_over(tls: ssl.SSLSocket, path: str = "/") -> int:
    return request(0, "GET", path, headers={"Host": "allowed.test"}, sock=tls)[0]


def test_cli_gateway_reload_on_sighup_keeps_open_tunnels(
        dns_server: StaticDns, ports: tuple[int, int], client_tls: ssl.SSLContext) -> None:
    with GatewayProcess(policy_for(ports, "allowed.test"), resolver=dns_server.address) as gw:
        assert f"agent a -> 127.0.0.1:{gw.ports['a']}" in gw.stderr()
        tunnel = tls_tunnel(gw.ports["a"], ports[1], client_tls)
        assert get_over(tunnel) == 200
        doc = yaml.safe_load(gw.policy_path.read_text())
        doc["spec"]["agents"][0]["egress"]["allow"] = [f"other.test:{p}" for p in ports]
        gw.policy_path.write_text(yaml.safe_dump(doc))
        gw.signal(signal.SIGHUP)
        url = f"http://allowed.test:{ports[0]}/"
        assert eventually(lambda: request(gw.ports["a"], "GET", url)[0] == 403)
        assert get_over(tunnel) == 200  # the tunnel opened under the old policy lives on
        tunnel.close()
        # the tunnel's close line comes after the 403's line: both are written once it is there
        assert eventually(lambda: any(x[R.METHOD] == "CONNECT" and x[R.EVENT] == R.EVENT_CLOSE
                                      for x in gw.log_lines()))
        lines = gw.log_lines()
        versions = {line[R.POLICY_VERSION] for line in lines}
        assert len(versions) == 2
        assert b'corral_gateway_reloads_total{result="ok"}' in gw.admin("/metrics")[1]


def test_bad_policy_on_reload_keeps_the_old_one(dns_server: StaticDns,
                                                ports: tuple[int, int]) -> None:
    with GatewayProcess(policy_for(ports, "allowed.test"), resolver=dns_server.address) as gw:
        gw.policy_path.write_text("spec: [this is not a policy\n")
        gw.signal(signal.SIGHUP)
        assert eventually(lambda: b'reloads_total{result="error"} 1.0' in gw.admin("/metrics")[1])
        assert request(gw.ports["a"], "GET", f"http://allowed.test:{ports[0]}/")[0] == 200
        assert "reload (SIGHUP) refused" in gw.stderr()


def test_configmap_symlink_swap_is_seen(tmp_path: Path, dns_server: StaticDns,
                                        ports: tuple[int, int]) -> None:
    """Kubernetes mounts ConfigMaps as corral.yaml -> ..data/corral.yaml, ..data -> ..v1."""
    (tmp_path / "..v1").mkdir()
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/corral.yaml", tmp_path / "corral.yaml")
    (tmp_path / "..v1" / "corral.yaml").write_text("placeholder")
    url = f"http://allowed.test:{ports[0]}/"
    with ThreadGateway(policy_for(ports, "allowed.test"), log_path=str(tmp_path / "log"),
                       resolver=("127.0.0.1", dns_server.port), poll_seconds=0.05,
                       policy_path=str(tmp_path / "corral.yaml")) as gw:
        assert request(gw.ports["a"], "GET", url)[0] == 200
        doc = yaml.safe_load((tmp_path / "corral.yaml").read_text())
        doc["spec"]["agents"][0]["egress"]["allow"] = [f"other.test:{ports[0]}"]
        (tmp_path / "..v2").mkdir()
        (tmp_path / "..v2" / "corral.yaml").write_text(yaml.safe_dump(doc))
        os.symlink("..v2", tmp_path / "..data_tmp")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        assert eventually(lambda: request(gw.ports["a"], "GET", url)[0] == 403)


def test_sigterm_drains_open_tunnels_then_exits_0(
        dns_server: StaticDns, ports: tuple[int, int], client_tls: ssl.SSLContext) -> None:
    gw = GatewayProcess(policy_for(ports, "allowed.test"), resolver=dns_server.address,
                        extra_args=("--drain-seconds", "20"))
    gw.start()
    try:
        tunnel = tls_tunnel(gw.ports["a"], ports[1], client_tls)
        gw.signal(signal.SIGTERM)

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", gw.ports["a"]), timeout=1).close()
            except OSError:
                return True
            return False

        assert eventually(refused)
        assert get_over(tunnel) == 200
        assert gw.proc is not None and gw.proc.poll() is None  # still draining
        tunnel.close()
        assert gw.proc.wait(15) == 0
        assert [(line[R.EVENT], line[R.STATUS]) for line in gw.log_lines()] == [
            (R.EVENT_OPEN, 200), (R.EVENT_CLOSE, 200)]
    finally:
        gw.stop()


def test_workers_share_ports_and_quarantine_reaches_all(
        dns_server: StaticDns, ports: tuple[int, int]) -> None:
    url = f"http://allowed.test:{ports[0]}/"
    with GatewayProcess(policy_for(ports, "allowed.test"), resolver=dns_server.address,
                        extra_args=("--workers", "2")) as gw:
        assert [request(gw.ports["a"], "GET", url)[0] for _ in range(10)] == [200] * 10
        assert eventually(lambda: b'decision="allow",reason="allowed_by_rule"} 10.0'
                          in gw.admin("/metrics")[1])
        assert gw.admin_call("PUT", "/v1/quarantine/a")[0] == 200
        statuses = [request(gw.ports["a"], "GET", url) for _ in range(10)]
        assert {s[1]["x-corral-reason"] for s in statuses} == {reasons.QUARANTINED}
        assert len(gw.wait_log(20)) == 20


def test_admin_token_guards_quarantine_changes(tmp_path: Path, dns_server: StaticDns,
                                                ports: tuple[int, int]) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with GatewayProcess(policy_for(ports, "allowed.test"), resolver=dns_server.address,
                        extra_args=("--admin-token-file", str(token))) as gw:
        assert gw.admin_call("PUT", "/v1/quarantine/a")[0] == 401
        req = urllib.request.Request(f"http://127.0.0.1:{gw.admin_port}/v1/quarantine/a",
                                     method="PUT", headers={"Authorization": "Bearer s3cret"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=5) as resp:
            assert resp.status == 200
        assert gw.admin("/v1/quarantine") == (200, b'{"quarantined":["a"]}\n')


def test_overlay_file_quarantines(tmp_path: Path, dns_server: StaticDns,
                                  ports: tuple[int, int]) -> None:
    overlay = tmp_path / "overlay.json"
    overlay.write_text('{"quarantined": []}')
    url = f"http://allowed.test:{ports[0]}/"
    with GatewayProcess(policy_for(ports, "allowed.test"), resolver=dns_server.address,
                        extra_args=("--overlay", str(overlay))) as gw:
        assert request(gw.ports["a"], "GET", url)[0] == 200
        overlay.write_text('{"quarantined": ["a"]}')
        # Wait on the admin port, not on the agent's own traffic: applying a quarantine cuts
        # the agent's open connections, and a poll in flight at that moment would be cut too.
        # The gateway applies it (and cuts) before the admin port can list it.
        assert eventually(lambda: quarantined(gw) == ["a"])
        assert request(gw.ports["a"], "GET", url)[0] == 403
        assert gw.admin_call("DELETE", "/v1/quarantine/a")[0] == 200
        assert yaml.safe_load(overlay.read_text()) == {"quarantined": []}
        assert request(gw.ports["a"], "GET", url)[0] == 200


def test_corral_up_check(tmp_path: Path) -> None:
    doc = yaml.safe_load(Path("examples/corral.yaml").read_text())
    for a, p in zip(doc["spec"]["agents"], free_ports(len(doc["spec"]["agents"])), strict=True):
        a["port"] = p
    policy = tmp_path / "corral.yaml"
    policy.write_text(yaml.safe_dump(doc))
    admin = free_ports(1)[0]
    out = subprocess.run(
        [sys.executable, "-m", "corral", "up", "-f", str(policy), "--check",
         "--admin-port", str(admin), "--log", str(tmp_path / "access.log")],
        capture_output=True, text=True, timeout=60, check=False,
        cwd=tmp_path)  # `corral up` keeps its state in ./.corral: never in the checkout
    assert (tmp_path / ".corral").is_dir()
    assert out.returncode == 0, out.stderr
    port = doc["spec"]["agents"][0]["port"]
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):  # curl: lower case
        assert f"{name}=http://127.0.0.1:{port}" in out.stdout
    assert str(tmp_path / "access.log") in out.stdout and "ready" in out.stdout


def test_cli_rejects_bad_flags(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "corral", "gateway", "-f", "examples/corral.yaml",
                          "--resolver", "not-an-ip"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2 and "--resolver" in out.stderr
    out = subprocess.run([sys.executable, "-m", "corral", "gateway", "-f",
                          str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2 and "not found" in out.stderr


def test_reload_opens_and_closes_listeners(tmp_path: Path, dns_server: StaticDns,
                                           ports: tuple[int, int]) -> None:
    url = f"http://allowed.test:{ports[0]}/"
    with ThreadGateway(policy_for(ports, "allowed.test"), log_path=str(tmp_path / "log"),
                       resolver=("127.0.0.1", dns_server.port), poll_seconds=0.05) as gw:
        path = Path(gw.policy_path)
        doc = yaml.safe_load(path.read_text())
        new_port = free_ports(1)[0]
        doc["spec"]["agents"][1] = {"name": "c", "selector": {"app": "c"}, "port": new_port,
                                    "egress": {"allow": [f"allowed.test:{ports[0]}"],
                                               "allow_cidrs": LOOP}}
        path.write_text(yaml.safe_dump(doc))

        def served() -> bool:
            try:
                return request(new_port, "GET", url)[0] == 200
            except OSError:
                return False

        assert eventually(served)
        with pytest.raises(OSError):
            request(gw.ports["b"], "GET", url)
        assert request(gw.ports["a"], "GET", url)[0] == 200
        assert {line[R.AGENT] for line in gw.log_lines()} >= {"a", "c"}


def test_workers_exit_2_when_a_port_is_taken(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    doc = make_policy(agent("a", allow=["allowed.test"]))
    doc["spec"]["agents"][0]["port"] = taken  # type: ignore[index]
    policy = tmp_path / "corral.yaml"
    policy.write_text(yaml.safe_dump(doc))
    try:
        for workers in ("1", "2"):
            out = subprocess.run(
                [sys.executable, "-m", "corral", "gateway", "-f", str(policy), "--workers",
                 workers, "--admin-port", str(free_ports(1)[0])],
                capture_output=True, text=True, timeout=60, check=False)
            assert out.returncode == 2, out.stderr
            assert "in use" in out.stderr or "cannot start" in out.stderr
    finally:
        blocker.close()


def test_usable_cpus_follows_the_cgroup_quota(tmp_path: Path) -> None:
    from corral.gateway.app import usable_cpus

    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert usable_cpus(str(cpu_max)) == min(2, len(os.sched_getaffinity(0)))
    cpu_max.write_text("max 100000\n")
    assert usable_cpus(str(cpu_max)) == len(os.sched_getaffinity(0))
    assert usable_cpus(str(tmp_path / "missing")) == len(os.sched_getaffinity(0))


def test_corral_up_runs_until_sigterm(tmp_path: Path, dns_server: StaticDns,
                                      ports: tuple[int, int]) -> None:
    doc = policy_for(ports, "allowed.test")
    agents = doc["spec"]["agents"]  # type: ignore[index]
    for a, p in zip(agents, free_ports(len(agents)), strict=True):
        a["port"] = p
    policy = tmp_path / "corral.yaml"
    policy.write_text(yaml.safe_dump(doc))
    admin = free_ports(1)[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "up", "-f", str(policy), "--admin-port", str(admin),
         "--resolver", dns_server.address], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        port = agents[0]["port"]
        url = f"http://allowed.test:{ports[0]}/"

        def served() -> bool:
            try:
                return request(port, "GET", url)[0] == 200
            except OSError:
                return False

        assert eventually(served, 30)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert f"HTTPS_PROXY=http://127.0.0.1:{port}" in out
        log = tmp_path / ".corral" / "gateway-access.log"
        lines = [json.loads(x) for x in log.read_text().splitlines()]
        assert lines[-1][R.STATUS] == 200  # flushed at shutdown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
