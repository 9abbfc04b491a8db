"""The SSRF classifier refuses every internal/reserved address in every IPv6 disguise."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.decide.addresses import classify, vet

REFUSED = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "::1", "::",
    "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2002:a9fe:a9fe::1", "::127.0.0.1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:db8::1",
]


@pytest.mark.parametrize("addr", REFUSED)
def test_refused(addr: str) -> None:
    assert classify(ipaddress.ip_address(addr)) is not None


@pytest.mark.parametrize("addr", ["8.8.8.8", "93.184.216.34", "2606:4700::1111",
                                  "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"])
def test_public_allowed(addr: str) -> None:
    assert classify(ipaddress.ip_address(addr)) is None


def test_allowed_cidr_admits_address_and_its_mapped_form() -> None:
    nets = (ipaddress.ip_network("10.96.0.0/12"),)
    assert vet(ipaddress.ip_address("10.96.0.10"), nets) is None
    assert vet(ipaddress.ip_address("::ffff:10.96.0.10"), nets) is None
    assert vet(ipaddress.ip_address("10.0.0.1"), nets) == "private"
    assert vet(ipaddress.ip_address("169.254.169.254"), nets) == "link_local"


@given(st.ip_addresses(v=4))
def test_mapped_form_classifies_like_the_ipv4_inside(v4: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    assert (classify(mapped) is None) == (classify(v4) is None)
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(v4))
    assert (classify(nat64) is None) == (classify(v4) is None)
