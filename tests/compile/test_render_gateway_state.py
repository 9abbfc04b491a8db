"""The rendered gateway Deployment gives quarantine a writable home and divides the limits."""

from __future__ import annotations

from corral.compile import gateway as g
from corral.model.load import load_policy


def test_state_on_an_empty_dir_overlay_read_only_and_limits_divided() -> None:
    policy = load_policy("examples/corral.yaml")
    pod = g.deployment(policy)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["overlay"].get("readOnly") is True
    assert not mounts["state"].get("readOnly") and "emptyDir" in volumes["state"]
    args = container["args"]
    assert args[args.index("--state") + 1].startswith(mounts["state"]["mountPath"] + "/")
    assert args[args.index("--limit-share") + 1] == str(policy.spec.gateway.replicas)
    assert "corral-control.corral-system.svc" in args  # never dialled (--control-plane)
