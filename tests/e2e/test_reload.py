"""Hot reload in namespaces: a new policy applies to new requests, open tunnels survive.

The policy file is a symlink swapped atomically (what a ConfigMap update does); the first
change is picked up by the file watch alone, the second by SIGHUP. The original policy is
restored at the end so the other e2e tests see the world they expect.
"""

from __future__ import annotations

import copy
import signal
from collections.abc import Iterator

import pytest

from corral.gateway.testing import eventually
from corral.model import records as R

from . import client
from . import conftest as cf
from .test_gateway import proxy, record_for

pytestmark = pytest.mark.netns


def _status(world: cf.World, url: str) -> int:
    return client.get(world.agent, proxy(world), url).status


@pytest.fixture
def restore_policy(world: cf.World) -> Iterator[None]:
    yield
    cf.install_policy(world.policy_path, cf.policy_document(), "v1")
    assert world.gateway is not None
    world.gateway.signal(signal.SIGHUP)
    assert eventually(lambda: _status(world, "http://denied.test/") == 403
                      and _status(world, "http://allowed.test/") == 200, 15)


def test_reload_applies_new_rules_and_keeps_open_tunnels(world: cf.World,
                                                         restore_policy: None) -> None:
    assert world.gateway is not None
    before = client.get(world.agent, proxy(world), "http://denied.test/")
    assert before.status == 403
    old_version = record_for(world, before.client, **{R.HOST: "denied.test",
                                                      R.STATUS: 403})[R.POLICY_VERSION]

    sock, first = client.open_tunnel(world.agent, proxy(world), "allowed.test:443")
    assert first.status == 200
    with client.tls_context(world.ca_pem).wrap_socket(sock, server_hostname="allowed.test") as tls:
        tls.sendall(b"GET /before HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        assert client.read_response(tls).json()["path"] == "/before"

        widened = copy.deepcopy(cf.policy_document())
        widened["spec"]["agents"][0]["egress"]["allow"].append("denied.test")
        cf.install_policy(world.policy_path, widened, "v2")  # file watch only, no signal
        assert eventually(lambda: _status(world, "http://denied.test/") == 200, 15), \
            "the swapped policy file was not picked up"

        tls.sendall(b"GET /after HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        assert client.read_response(tls).json()["path"] == "/after"  # tunnel survived

        narrowed = copy.deepcopy(cf.policy_document())
        narrowed["spec"]["agents"][0]["egress"]["allow"].remove("allowed.test")
        cf.install_policy(world.policy_path, narrowed, "v3")
        world.gateway.signal(signal.SIGHUP)
        assert eventually(lambda: _status(world, "http://allowed.test/") == 403, 15)
        tls.sendall(b"GET /still HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        # an established tunnel was allowed when opened; reload does not cut it
        assert client.read_response(tls).json()["path"] == "/still"

    after = client.get(world.agent, proxy(world), "http://api.allowed.test/")
    assert after.status == 200
    rec = record_for(world, after.client, **{R.HOST: "api.allowed.test", R.STATUS: 200})
    assert rec[R.POLICY_VERSION] != old_version
    assert world.gateway.popen.poll() is None


def test_an_invalid_policy_is_refused_and_the_old_one_stays(world: cf.World,
                                                            restore_policy: None) -> None:
    assert world.gateway is not None
    broken = copy.deepcopy(cf.policy_document())
    broken["spec"]["agents"][0]["egress"]["allow"].append("*")  # refused pattern
    def refusals() -> int:
        return world.gateway.log.read_text(errors="replace").count("refused") \
            if world.gateway else 0

    before = refusals()
    cf.install_policy(world.policy_path, broken, "broken")
    world.gateway.signal(signal.SIGHUP)
    # the gateway says why it kept the old policy, naming the file, the path and the problem
    assert eventually(lambda: refusals() > before, 10), world.gateway.tail()
    assert "egress.allow[8]" in world.gateway.tail()
    assert _status(world, "http://allowed.test/") == 200
    assert _status(world, "http://denied.test/") == 403
    assert world.gateway.popen.poll() is None
