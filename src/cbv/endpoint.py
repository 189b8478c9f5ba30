"""Addresses as the config writes them: "host:port", "[v6]:port" (the one parser every
host and port in the config goes through) and, for listeners, "unix:/path"."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

UNIX_PREFIX = "unix:"
ENDPOINT_FORMS = "host:port, [ipv6]:port or unix:/path"


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


def split_host_port(text: str, default_port: int | None = None, *, any_port: bool = False,
                    forms: str = "host:port or [ipv6]:port") -> tuple[str, int]:
    """"host:port" or "[v6]:port"; with a `default_port`, also "host", "[v6]" and a bare v6.
    Port 0 only with `any_port` (a listener's "any free port"). Raises ValueError in one
    line; `forms` is what it says the caller accepts.
    """
    value = text.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [ipv6]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif ":" in value and default_port is None:
        raise ValueError(f"{text!r}: expected {forms}")
    else:
        host, port_text = value, ""
    if not host:
        raise ValueError(f"{text!r}: no host")
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r}: expected {forms}")
        return host, default_port
    lowest = 0 if any_port else 1
    if not port_text.isdigit() or not lowest <= int(port_text) < 65536:
        raise ValueError(f"{text!r}: bad port {port_text!r}")
    return host, int(port_text)


def parse_endpoint(text: str) -> Endpoint:
    """A TCP endpoint needs an explicit port (0: any free one); a unix one an absolute path."""
    value = text.strip()
    if value.startswith(UNIX_PREFIX):
        path = value[len(UNIX_PREFIX):]
        if not path.startswith("/"):
            raise EndpointError(f"{text!r}: a unix socket needs an absolute path")
        return Endpoint(path=path)
    try:
        host, port = split_host_port(text, any_port=True, forms=ENDPOINT_FORMS)
    except ValueError as exc:
        raise EndpointError(str(exc)) from None
    return Endpoint(host=host, port=port)
