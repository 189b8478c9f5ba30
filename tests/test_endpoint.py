"""The one host:port parser: listeners, DNS servers, routes and Redis Cluster nodes."""

from __future__ import annotations

import pytest

from cbv.endpoint import Endpoint, EndpointError, parse_endpoint, split_host_port


@pytest.mark.parametrize(("text", "default", "expected"), [
    ("mx.example.test:2525", None, ("mx.example.test", 2525)),
    ("127.0.0.1:53", None, ("127.0.0.1", 53)),
    (" [::1]:5353 ", None, ("::1", 5353)),
    ("mx.example.test", 25, ("mx.example.test", 25)),
    ("[2001:db8::1]", 53, ("2001:db8::1", 53)),
    ("2001:db8::1", 53, ("2001:db8::1", 53)),
    ("127.0.0.1:65535", 53, ("127.0.0.1", 65535)),
])
def test_host_and_port(text: str, default: int | None, expected: tuple[str, int]) -> None:
    assert split_host_port(text, default) == expected


@pytest.mark.parametrize(("text", "default", "message"), [
    ("mx.example.test", None, r"'mx.example.test': expected host:port or \[ipv6\]:port"),
    ("2001:db8::1", None, r"expected host:port or \[ipv6\]:port"),
    (":25", 25, "no host"),
    ("[]:25", 25, "is not an IPv6 address"),
    ("[mx.example.test]:25", 25, "is not an IPv6 address"),
    ("[::1]25", 25, r"expected \[ipv6\]:port"),
    ("[::1", 25, r"expected \[ipv6\]:port"),
    ("mx.example.test:0", 25, "bad port '0'"),
    ("mx.example.test:65536", 25, "bad port '65536'"),
    ("mx.example.test:x25", 25, "bad port 'x25'"),
    ("mx.example.test:-1", 25, "bad port '-1'"),
])
def test_bad_host_and_port(text: str, default: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        split_host_port(text, default)
    assert "\n" not in str(raised.value)


def test_port_zero_only_where_any_free_port_is_meant() -> None:
    assert split_host_port("127.0.0.1:0", any_port=True) == ("127.0.0.1", 0)
    assert parse_endpoint("127.0.0.1:0") == Endpoint("127.0.0.1", 0)


def test_listener_endpoints() -> None:
    assert parse_endpoint("[::1]:10040") == Endpoint("::1", 10040)
    assert str(parse_endpoint("[::1]:10040")) == "[::1]:10040"
    assert parse_endpoint("unix:/run/cbv/policy.sock") == Endpoint(path="/run/cbv/policy.sock")
    with pytest.raises(EndpointError, match="absolute path"):
        parse_endpoint("unix:cbv.sock")
    with pytest.raises(EndpointError, match=r"expected host:port, \[ipv6\]:port or unix:/path"):
        parse_endpoint("localhost")
