"""Risk flags of new destinations: known channels, raw IPs, new TLDs, encoded subdomains; and
the robust-statistics and Falco-exception helpers."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime

import pytest

from corral.learn.falco_tuning import exception_for
from corral.learn.report import ReviewOptions
from corral.learn.risk import encoded_label, flags_for, registrable

KNOWN = frozenset({"com", "org", "io", "net", "gov", "dev", "app", "google", "sh"})


@pytest.mark.parametrize(("host", "kinds"), [
    ("pastebin.com", {"paste"}),
    ("abc123.ngrok-free.app", {"tunnel"}),
    ("dns.google", {"doh"}),
    ("transfer.sh", {"file-sharing"}),
    ("d111111abcdef8.cloudfront.net", {"cdn-front"}),
    ("203.0.113.9", {"raw-ip"}),
    ("2001:db8::1", {"raw-ip"}),
    ("api.example.xyz", {"new-tld"}),
    ("api.openai.com", set()),
])
def test_flag_kinds(host: str, kinds: set[str]) -> None:
    assert {f.kind for f in flags_for(host, KNOWN)} == kinds


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


def test_no_known_tlds_means_no_new_tld_flag() -> None:
    """A fresh store has no history: everything would be 'new'; say nothing instead."""
    assert flags_for("api.example.xyz", frozenset()) == []


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
