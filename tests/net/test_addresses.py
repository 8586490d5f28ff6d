"""The address rules as a table, and numeric hosts read the way the resolver reads them."""

from __future__ import annotations

import socket
import sys
from ipaddress import IPv4Address, ip_address

import pytest

from cadenza.net.addresses import numeric_host, refusal

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "0.0.0.0": "unspecified",
    "10.1.2.3": "private (RFC 1918)",
    "172.16.0.1": "private (RFC 1918)",
    "172.31.255.255": "private (RFC 1918)",
    "192.168.0.1": "private (RFC 1918)",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.255": "carrier-grade NAT",
    "169.254.169.254": "link-local",
    "192.0.0.8": "IETF protocol",
    "192.0.2.10": "documentation",
    "198.18.0.1": "benchmarking",
    "224.0.0.251": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast",
    "::": "unspecified",
    "::1": "loopback",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "fc00::1": "unique local",
    "fd00:ec2::254": "unique local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "2001:db8::1": "documentation",
    "100::1": "discard-only",
    "::ffff:127.0.0.1": "IPv4-mapped form of 127.0.0.1, a loopback",
    "::ffff:169.254.169.254": "IPv4-mapped form of 169.254.169.254, a link-local",
    "::ffff:10.0.0.1": "IPv4-mapped form of 10.0.0.1",
    "::127.0.0.1": "IPv4-compatible form of 127.0.0.1",
    "::8.8.8.8": "IPv4-compatible form of 8.8.8.8",
    "64:ff9b::7f00:1": "NAT64 form of 127.0.0.1",
    "64:ff9b::a9fe:a9fe": "NAT64 form of 169.254.169.254",
    "64:ff9b:1::a00:1": "local-use NAT64",
    "2002:7f00:1::1": "6to4 form of 127.0.0.1",
    "2002:a9fe:a9fe::1": "6to4 form of 169.254.169.254",
    # Teredo: server 65.54.227.120, client 127.0.0.1 (stored inverted: 80ff:fffe).
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "Teredo form of 127.0.0.1",
    "2001:0:0a00:0001:8000:63bf:3fff:fdd2": "Teredo form of 10.0.0.1",
    "2001:2::1": "IETF protocol",
    "4000::1": "reserved",
}

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below the shared (CGNAT) range
    "100.128.0.0",  # just above it
    "172.32.0.1",  # just above 172.16/12
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",  # mapped, public
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8: how IPv6-only hosts reach IPv4 receivers
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, server and client (8.8.8.8) public
]


@pytest.mark.parametrize(("text", "why"), REFUSED.items(), ids=list(REFUSED))
def test_refused_addresses_say_why(text: str, why: str) -> None:
    reason = refusal(ip_address(text))
    assert reason is not None and why in reason


@pytest.mark.parametrize("text", ALLOWED)
def test_public_unicast_addresses_are_allowed(text: str) -> None:
    assert refusal(ip_address(text)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0X7F.0.0.01", "127.0.0.1"),
        ("012.0.0.1", "10.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("127.0.0.1", "127.0.0.1"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_numeric_hosts_mean_what_inet_aton_says(host: str, address: str) -> None:
    assert numeric_host(host) == IPv4Address(address)
    if sys.platform == "linux":  # glibc's reading, the one getaddrinfo applies
        assert socket.inet_aton(host) == IPv4Address(address).packed


@pytest.mark.parametrize(
    "host", ["1.2.3.4.5", "08.1.1.1", "0x", "256.1.1.1", "1.2.3.0x1000000", "127..1", "4294967296"]
)
def test_hosts_ending_in_a_number_that_are_no_address_are_reported(host: str) -> None:
    assert isinstance(numeric_host(host), str)
    if sys.platform == "linux":
        with pytest.raises(OSError):
            socket.inet_aton(host)


@pytest.mark.parametrize(
    "host", ["example.com", "1password.com", "a.b-1", "0x7f.example", "xn--bcher-kva.de"]
)
def test_host_names_are_not_numeric(host: str) -> None:
    assert numeric_host(host) is None


def test_a_trailing_dot_still_ends_in_a_number() -> None:
    assert numeric_host("127.0.0.1.") == IPv4Address("127.0.0.1")
