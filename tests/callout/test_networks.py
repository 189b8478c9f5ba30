"""Which addresses may be dialled: the global Internet only, unless allowed.

The table covers every block of the IANA special-purpose registries and every way of
carrying an IPv4 address inside IPv6, in the textual forms a DNS answer, a route or an
address literal can bring.
"""

from __future__ import annotations

import ipaddress

import pytest

from cbv.callout.networks import IPV4_DENIED, IPV6_DENIED, TargetPolicy, embedded_ipv4

FORBIDDEN: list[tuple[str, str]] = [
    # IPv4 special-purpose registry, multicast, reserved
    ("0.0.0.0", "this network"),
    ("0.1.2.3", "this network"),
    ("10.0.0.1", "private-use"),
    ("10.255.255.254", "private-use"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),
    ("172.16.0.1", "private-use"),
    ("172.31.255.254", "private-use"),
    ("192.0.0.9", "IETF protocol assignments"),
    ("192.0.0.170", "IETF protocol assignments"),
    ("192.0.2.1", "TEST-NET-1"),
    ("192.31.196.1", "AS112-v4"),
    ("192.52.193.1", "AMT"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("192.168.1.1", "private-use"),
    ("192.175.48.1", "AS112"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("198.51.100.1", "TEST-NET-2"),
    ("203.0.113.1", "TEST-NET-3"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    # IPv6 special-purpose registry and non-global-unicast space
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("0:0:0:0:0:0:0:1", "loopback"),
    ("100::1", "discard-only"),
    ("100:0:0:1::1", "dummy IPv6 prefix"),
    ("2001:2::1", "IETF protocol assignments"),
    ("2001:1::1", "IETF protocol assignments"),
    ("2001:20::1", "IETF protocol assignments"),
    ("2001:db8::1", "documentation"),
    ("2620:4f:8000::1", "AS112"),
    ("3fff::1", "documentation"),
    ("3fff:fff:ffff::1", "documentation"),
    ("5f00::1", "segment routing"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff05::2", "multicast"),
    ("4000::1", "not global unicast"),
    ("8000::1", "not global unicast"),
    ("1::1", "not global unicast"),
    # IPv4-mapped: judged as the IPv4 address
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private-use"),
    ("::ffff:a00:1", "private-use"),
    ("0:0:0:0:0:ffff:c0a8:101", "private-use"),
    ("::ffff:8.8.8.8x", "not an IP address"),
    # IPv4-compatible
    ("::10.0.0.1", "IPv4-compatible form of 10.0.0.1"),
    ("::a00:1", "IPv4-compatible form of 10.0.0.1"),
    ("::8.8.8.8", "IPv4-compatible"),
    # SIIT IPv4-translated
    ("::ffff:0:a00:1", "SIIT form of 10.0.0.1"),
    ("::ffff:0:8.8.8.8", "SIIT"),
    # 6to4
    ("2002:a00:1::", "6to4 form of 10.0.0.1"),
    ("2002:7f00:1::1", "6to4 form of 127.0.0.1"),
    ("2002:c0a8:101::1", "6to4 form of 192.168.1.1"),
    ("2002:808:808::1", "6to4"),
    # Teredo: server 10.0.0.1; client 192.168.1.1 obfuscated (bits inverted)
    ("2001:0:a00:1::", "Teredo server form of 10.0.0.1"),
    ("2001:0:808:808:0:0:3f57:fefe", "Teredo client form of 192.168.1.1"),
    ("2001:0:808:808:0:0:f7f7:f7f7", "Teredo"),
    # NAT64
    ("64:ff9b::a00:1", "NAT64 form of 10.0.0.1"),
    ("64:ff9b::10.0.0.1", "NAT64 form of 10.0.0.1"),
    ("64:ff9b::127.0.0.1", "NAT64 form of 127.0.0.1"),
    ("64:ff9b::808:808", "NAT64 well-known prefix"),
    ("64:ff9b:1::a00:1", "NAT64 form of 10.0.0.1"),
    ("64:ff9b:1:a00:0:100::", "NAT64 form of 10.0.0.1"),
    ("64:ff9b:1::808:808", "NAT64 local-use prefix"),
    # odd textual forms and scopes
    ("fe80::1%eth0", "scoped address"),
    ("2a00:1450:4001:82a::1b%1", "scoped address"),
    ("not-an-ip", "not an IP address"),
    ("", "not an IP address"),
    ("010.0.0.1", "not an IP address"),
    ("1.2.3", "not an IP address"),
    ("[::1]", "not an IP address"),
]

ALLOWED = [
    "8.8.8.8",
    "193.0.6.139",
    "1.1.1.1",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.1",
    "192.0.1.255",
    "192.169.0.1",
    "198.17.255.255",
    "198.20.0.1",
    "223.255.255.254",
    "::ffff:8.8.8.8",
    "2001:4860:4860::8888",
    "2a00:1450:4001:82a::1b",
    "2620:4f:8001::1",
    "2001:200::1",
    "3ffe::1",
    "3fff:1000::1",
    "2003::1",
]


@pytest.mark.parametrize(("ip", "why"), FORBIDDEN)
def test_forbidden_by_default(ip: str, why: str) -> None:
    reason = TargetPolicy([]).why_forbidden(ip)
    assert reason is not None and why in reason
    assert TargetPolicy([]).is_forbidden(ip)


@pytest.mark.parametrize("ip", ALLOWED)
def test_global_addresses_allowed(ip: str) -> None:
    assert TargetPolicy([]).why_forbidden(ip) is None


def test_the_table_has_the_forms_the_filter_promises() -> None:
    assert len(FORBIDDEN) + len(ALLOWED) >= 60


@pytest.mark.parametrize(("net", "why"), [*IPV4_DENIED, *IPV6_DENIED])
def test_every_registry_block_is_denied_at_both_ends(net: str, why: str) -> None:
    network = ipaddress.ip_network(net)
    policy = TargetPolicy([])
    assert policy.is_forbidden(str(network.network_address))
    assert policy.is_forbidden(str(network.broadcast_address))


def test_allowed_networks_open_exactly_what_they_name() -> None:
    policy = TargetPolicy(["127.0.0.0/8", "10.20.0.0/16"])
    assert not policy.is_forbidden("127.0.0.2")
    assert not policy.is_forbidden("::ffff:127.0.0.2")
    assert not policy.is_forbidden("10.20.1.1")
    assert policy.is_forbidden("10.21.1.1")
    assert policy.is_forbidden("::1")


@pytest.mark.parametrize("ip", ["2002:7f00:2::1", "64:ff9b::127.0.0.2", "::127.0.0.2",
                                "::ffff:0:127.0.0.2", "2001:0:7f00:2::"])
def test_allowing_an_ipv4_network_does_not_open_its_transition_forms(ip: str) -> None:
    assert TargetPolicy(["127.0.0.0/8"]).is_forbidden(ip)


def test_an_opened_nat64_prefix_still_judges_the_embedded_address() -> None:
    policy = TargetPolicy(["64:ff9b::/96"])
    assert not policy.is_forbidden("64:ff9b::808:808")
    reason = policy.why_forbidden("64:ff9b::a00:1")
    assert reason is not None and "10.0.0.1" in reason


def test_embeddings_are_all_found() -> None:
    teredo = ipaddress.IPv6Address("2001:0:a00:1:0:0:3f57:fefe")
    assert [(kind, str(ip)) for kind, ip in embedded_ipv4(teredo)] == [
        ("Teredo server", "10.0.0.1"), ("Teredo client", "192.168.1.1")]
    assert embedded_ipv4(ipaddress.IPv6Address("2a00:1450:4001:82a::1b")) == []
    assert embedded_ipv4(ipaddress.IPv6Address("::1")) == []
