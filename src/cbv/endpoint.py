"""Listener addresses as the config writes them: "host:port", "[v6]:port" or "unix:/path"."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

UNIX_PREFIX = "unix:"


class EndpointError(ValueError):
    """The listener address cannot be used; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Either a TCP host and port or a unix socket path."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    @property
    def is_loopback(self) -> bool:
        """Reachable from this machine only: a unix socket, localhost or a loopback address."""
        if self.path or self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # any other name may resolve to anything

    def __str__(self) -> str:
        if self.path:
            return f"{UNIX_PREFIX}{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """A TCP endpoint needs an explicit port (0: any free one); a unix one an absolute path."""
    value = text.strip()
    if value.startswith(UNIX_PREFIX):
        path = value[len(UNIX_PREFIX):]
        if not path.startswith("/"):
            raise EndpointError(f"{text!r}: a unix socket needs an absolute path")
        return Endpoint(path=path)
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise EndpointError(f"{text!r}: expected [ipv6]:port")
        port_text = rest[1:]
        _check_ip(host, text)
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host or ":" in host:
            raise EndpointError(f"{text!r}: expected host:port, [ipv6]:port or unix:/path")
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise EndpointError(f"{text!r}: bad port {port_text!r}")
    return Endpoint(host=host, port=int(port_text))


def _check_ip(host: str, text: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise EndpointError(f"{text!r}: {host!r} is not an IPv6 address") from None
