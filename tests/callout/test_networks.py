"""Which addresses may be dialled: the global Internet only, unless allowed."""

from __future__ import annotations

import pytest

from cbv.callout.networks import TargetPolicy


@pytest.mark.parametrize(
    "ip",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.1.1", "100.64.0.1",
     "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "240.0.0.1",
     "::1", "::", "fe80::1", "fc00::1", "ff02::1", "2001:db8::1", "::ffff:127.0.0.1",
     "::ffff:10.0.0.1", "not-an-ip"],
)
def test_forbidden_by_default(ip: str) -> None:
    assert TargetPolicy([]).is_forbidden(ip)


@pytest.mark.parametrize("ip", ["8.8.8.8", "193.0.6.139", "2001:4860:4860::8888"])
def test_global_addresses_allowed(ip: str) -> None:
    assert not TargetPolicy([]).is_forbidden(ip)


def test_allowed_networks_open_exactly_what_they_name() -> None:
    policy = TargetPolicy(["127.0.0.0/8", "10.20.0.0/16"])
    assert not policy.is_forbidden("127.0.0.2")
    assert not policy.is_forbidden("::ffff:127.0.0.2")
    assert not policy.is_forbidden("10.20.1.1")
    assert policy.is_forbidden("10.21.1.1")
    assert policy.is_forbidden("::1")
