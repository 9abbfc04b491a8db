"""Every rendered folder of manifests applies with ``kubectl apply -k``: the real kubectl's
kustomize builds exactly the objects corral wrote. The gateway image may be pinned by digest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.cli import main
from corral.compile.render import KUSTOMIZATION, render_all
from corral.model.errors import PolicyError
from corral.model.load import parse_policy

EXAMPLE = Path(__file__).parents[2] / "examples" / "corral.yaml"
DIGEST = "registry.example.com/corral@sha256:" + "ab" * 32
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None,
                                   reason="kubectl is not installed (scripts/dev installs it)")


def example(**gateway: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["gateway"].update(gateway)
    doc["spec"]["agents"][0]["ingress"] = {"service": "research", "port": 8000,
                                           "hostnames": ["agents.example.com"]}
    return doc


def identities(docs: list[Any]) -> list[tuple[str, str, str]]:
    return sorted((d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
                  for d in docs if d)


@needs_kubectl
def test_kubectl_kustomize_builds_every_rendered_folder(tmp_path: Path) -> None:
    policy_file = tmp_path / "corral.yaml"
    policy_file.write_text(yaml.safe_dump(example()))
    out = tmp_path / "out"
    assert main(["render", "-f", str(policy_file), "-o", str(out)]) == 0
    built = 0
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        if folder.name == "falco":  # Helm values and a rules file: no manifests to apply
            assert not (folder / KUSTOMIZATION).exists()
            continue
        written = [d for f in folder.glob("*.yaml") if f.name != KUSTOMIZATION
                   for d in yaml.safe_load_all(f.read_text())]
        done = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, (folder.name, done.stderr)
        assert identities(list(yaml.safe_load_all(done.stdout))) == identities(written), folder
        built += len(written)
    assert built > 50


def test_gateway_image_by_digest_is_rendered_as_written() -> None:
    policy, _ = parse_policy(yaml.safe_dump(example(image=DIGEST)))
    for folder in ("gateway", "control"):
        text = "".join(f.render() for f in render_all(policy, {folder})[folder].values())
        assert f"image: {DIGEST}\n" in text


@pytest.mark.parametrize("image", ["registry.example.com/corral@sha256:abc", "Corral:1",
                                   "registry.example.com/corral:bad tag", 42])
def test_malformed_gateway_image_is_an_error(image: object) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(yaml.safe_dump(example(image=image)))
    assert [p.path for p in info.value.problems] == ["spec.gateway.image"]
