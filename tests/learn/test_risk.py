"""Risk flags of destinations: known channels, storage endpoints in every provider form, raw IPs,
abused TLDs, encoded subdomains, generated names; benign look-alikes stay unflagged; and the
Falco-exception helper."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime

import pytest

from corral.learn.falco_tuning import exception_for
from corral.learn.report import ReviewOptions
from corral.learn.risk import encoded_label, flags_for, generated_label, registrable
from corral.model.domains import parse_pattern
from corral.model.lint import lint_policy
from corral.model.load import parse_policy


@pytest.mark.parametrize(("host", "kinds"), [
    ("pastebin.com", {"paste"}),
    ("abc123.ngrok-free.app", {"tunnel"}),
    ("dns.google", {"doh"}),
    ("transfer.sh", {"file-sharing"}),
    ("d111111abcdef8.cloudfront.net", {"cdn-front"}),
    ("203.0.113.9", {"raw-ip"}),
    ("2001:db8::1", {"raw-ip"}),
    ("api.openai.com", set()),
    ("login.example.top", {"abused-tld"}),
    ("free-prizes.tk", {"abused-tld"}),
    ("x7k2m9q4w8e1.com", {"dga"}),
    ("qxjzkwpvbnrt.net", {"dga"}),
])
def test_flag_kinds(host: str, kinds: set[str]) -> None:
    assert {f.kind for f in flags_for(host)} == kinds


@pytest.mark.parametrize("host", [
    # Amazon S3: global, regional, legacy dash region, path style, virtual-hosted, dualstack,
    # accelerate, website, access point, FIPS, Express One Zone, China
    "s3.amazonaws.com", "name.s3.amazonaws.com", "name.s3.eu-north-1.amazonaws.com",
    "s3.eu-north-1.amazonaws.com", "name.s3-eu-west-1.amazonaws.com",
    "s3.dualstack.us-east-1.amazonaws.com", "name.s3.dualstack.ap-south-1.amazonaws.com",
    "name.s3-accelerate.amazonaws.com", "name.s3-accelerate.dualstack.amazonaws.com",
    "name.s3-website-us-east-1.amazonaws.com", "name.s3-website.eu-central-1.amazonaws.com",
    "ap-123456789012.s3-accesspoint.us-east-1.amazonaws.com", "s3-fips.us-east-2.amazonaws.com",
    "name--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com",
    "name.s3.cn-north-1.amazonaws.com.cn",
    # Google, Azure, Cloudflare R2, Backblaze B2 and other S3-compatible stores
    "storage.googleapis.com", "name.storage.googleapis.com", "firebasestorage.googleapis.com",
    "acct.blob.core.windows.net", "acct.dfs.core.windows.net", "acct.web.core.windows.net",
    "acct.blob.core.usgovcloudapi.net", "acct.r2.cloudflarestorage.com", "pub-1234.r2.dev",
    "s3.us-west-004.backblazeb2.com", "f004.backblazeb2.com", "name.fra1.digitaloceanspaces.com",
    "s3.eu-central-1.wasabisys.com", "name.oss-cn-hangzhou.aliyuncs.com",
    "name.cos.ap-guangzhou.myqcloud.com", "s3.fr-par.scw.cloud",
])
def test_storage_endpoints_in_every_form(host: str) -> None:
    assert "storage" in {f.kind for f in flags_for(host)}


@pytest.mark.parametrize("host", [
    # other services of the same providers, and benign hosts on TLDs a fleet may not have seen
    "bedrock-runtime.us-east-1.amazonaws.com", "sts.amazonaws.com", "ec2.eu-north-1.amazonaws.com",
    "www.googleapis.com", "oauth2.googleapis.com", "login.microsoftonline.com",
    "api.mistral.ai", "huggingface.co", "www.who.int", "api.cohere.ai", "pkg.go.dev",
    "objects.githubusercontent.com", "pypi.org", "s3tools.example.com",
])
def test_benign_look_alikes_carry_no_flag(host: str) -> None:
    assert flags_for(host) == []


def test_lint_and_review_share_the_table() -> None:
    """An allow entry opening a storage endpoint is a lint warning, from the same data."""
    policy = parse_policy(_WILDCARD_POLICY, "corral.yaml")[0]
    msgs = " ".join(m for _, m in lint_policy(policy))
    assert "*.amazonaws.com opens s3.amazonaws.com (any S3 endpoint form) (storage)" in msgs
    assert "*.core.windows.net opens blob.core.windows.net (storage)" in msgs
    assert "api.openai.com" not in msgs
    assert parse_pattern("*.amazonaws.com").wildcard


_WILDCARD_POLICY = """apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {name: t}
spec:
  namespace: ai
  registries: [registry.example.com/]
  agents:
    - name: a
      selector: {app: a}
      egress:
        allow: ["*.amazonaws.com", "*.core.windows.net", api.openai.com]
"""


def test_generated_names_need_length_and_randomness() -> None:
    for benign in ("huggingface.co", "githubusercontent.com", "digitaloceanspaces.com",
                   "w3schools.com", "ycombinator.com", "my2cents4u.com", "x509certs.io"):
        assert generated_label(benign) is None, benign


@pytest.mark.parametrize("host", [
    "files.pythonhosted.org", "objects.githubusercontent.com", "us-east-1.console.aws.amazon.com",
    "storage-component-cache.example.com", "forecast.weather.gov", "en.wikipedia.org",
    "registry-1.docker.io", "production.cloudflare.docker.com",
    "prod-registry-k8s-io-eu-west-1.s3.dualstack.eu-west-1.amazonaws.com",
])
def test_ordinary_names_are_not_encoded(host: str) -> None:
    assert encoded_label(host) is None


def test_encoded_chunks_are_flagged_in_dns_safe_encodings() -> None:
    """DNS names are case-insensitive, so exfiltration tools use hex or base32 chunks."""
    rnd = random.Random(3)
    for _ in range(200):
        data = rnd.randbytes(rnd.randrange(15, 32))  # labels of 24+ chars; shorter: see docs
        for label in (data.hex(), base64.b32encode(data).decode().strip("=").lower()):
            assert encoded_label(f"{label}.x.exfil-example.com") == label[:63] or len(label) > 63
    assert encoded_label("a" * 45 + ".exfil-example.com") == "a" * 45  # long: data, not a name


def test_registrable_domain_uses_the_public_suffix_list() -> None:
    assert registrable("a.b.example.co.uk") == "example.co.uk"
    assert registrable("x.y.herokuapp.com") == "y.herokuapp.com"


def test_a_tld_new_to_the_fleet_is_no_flag() -> None:
    """A TLD merely new to the fleet is no risk: .ai, .co, .int hosts are benign."""
    assert flags_for("api.example.xyz") == []


def test_falco_exception_needs_one_dominant_pattern() -> None:
    opts = ReviewOptions(now=datetime(2026, 11, 26, tzinfo=UTC))
    sigs = [("cc1", "gcc", "", "reg/coder", 90), ("sh", "pip", "", "reg/coder", 10)]
    exc = exception_for("r", sigs, opts)
    assert exc is not None and exc.values == ("cc1", "reg/coder") and exc.share == 0.9
    spread = [("bash", "", "", "", 10), ("sh", "", "", "", 10), ("zsh", "", "", "", 10)]
    assert exception_for("r", spread, opts) is None
    with_file = [("python3", "", "/etc/ssl/certs/ca.pem", "", 50)]
    exc = exception_for("r", with_file, opts)
    assert exc is not None and exc.fields == ("proc.name", "fd.name")
