"""How `[[callout.egress]]` tables and proxy URLs are written, checked when the config loads.

This module imports nothing from cbv but the parsers it needs, so `cbv.config` can use it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_EGRESS = "direct"
PROXY_EGRESS = "proxy"
SOCKS_PORT = 1080


@dataclass(frozen=True, slots=True)
class ProxyAddress:
    """A SOCKS5 proxy: dialled at `host` (an IP address or a name the administrator chose)."""

    host: str
    port: int
    username: str = ""
    password: str = ""

    def __str__(self) -> str:
        """Never shows the password: this text goes into verdict details and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"socks5://{user}{host}:{self.port}"


def _redacted(text: str) -> str:
    """The URL as errors may show it: without its password."""
    head, at, host = text.strip().rpartition("@")
    if not at:
        return text.strip()
    scheme, sep, credentials = head.partition("://")
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}"


def parse_proxy_url(text: str) -> ProxyAddress:
    """"socks5://[user:pass@]host:port"; user and password percent-encoded, at most 255 bytes."""
    try:
        return _parse_proxy_url(text)
    except ValueError as exc:
        raise ValueError(f"proxy {_redacted(text)!r}: {exc}") from None


def _parse_proxy_url(text: str) -> ProxyAddress:
    url = urlsplit(text.strip())
    if url.scheme.lower() not in ("socks5", "socks5h"):
        raise ValueError("only socks5://[user:pass@]host:port is supported")
    if url.path not in ("", "/") or url.query or url.fragment:
        raise ValueError("expected socks5://[user:pass@]host:port, nothing after")
    try:
        port = url.port or SOCKS_PORT
    except ValueError:
        raise ValueError("bad port") from None
    if not url.hostname:
        raise ValueError("no host")
    username = unquote(url.username or "")
    password = unquote(url.password or "")
    if len(username.encode()) > 255 or len(password.encode()) > 255:
        raise ValueError("username and password are at most 255 bytes each")
    if bool(username) != bool(password):
        raise ValueError("give both a username and a password, or neither")
    return ProxyAddress(url.hostname, port, username, password)


def _family(ip: str) -> int:
    return ipaddress.ip_address(ip).version


class EgressConfig(BaseModel):
    """[[callout.egress]]: one way out for callouts, a local source address or a SOCKS5 proxy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="what routes, logs, metrics and `cbv doctor` call it")
    source_address: list[str] = Field(
        default_factory=list,
        description=(
            "local address(es) to dial from: at most one IPv4 and one IPv6; a single string is "
            "fine"
        ),
    )
    proxy: str = Field(
        default="",
        description="\"socks5://[user:pass@]host:port\": callouts leave through this proxy",
    )
    helo_name: str = Field(
        default="",
        description=(
            "EHLO name of this egress, matching the PTR of its public address; \"\" is "
            "[callout] helo_name"
        ),
    )
    public_address: str = Field(
        default="",
        description=(
            "the address mail servers see (behind NAT or a proxy), for `cbv doctor`; \"\" is the"
            " source address"
        ),
    )
    daily_budget: int | None = Field(
        default=None, ge=1,
        description="most callouts a UTC day through this egress (shared through Redis)",
    )
    per_minute: float | None = Field(
        default=None, gt=0, le=1_000_000,
        description="most callouts a minute through this egress (shared through Redis)",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError(f"egress name {value!r}: letters, digits, '.', '_' and '-' only")
        return value

    @field_validator("source_address", mode="before")
    @classmethod
    def _one_or_two(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("source_address")
    @classmethod
    def _check_sources(cls, value: list[str]) -> list[str]:
        families: set[int] = set()
        for ip in value:
            try:
                family = _family(ip)
            except ValueError:
                raise ValueError(f"source_address {ip!r} is not an IP address") from None
            if family in families:
                raise ValueError("source_address: at most one IPv4 and one IPv6 address")
            families.add(family)
        return [str(ipaddress.ip_address(ip)) for ip in value]

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str) -> str:
        if value:
            parse_proxy_url(value)
        return value

    @field_validator("helo_name")
    @classmethod
    def _check_helo(cls, value: str) -> str:
        if any(c.isspace() or c in "<>" for c in value):
            raise ValueError(f"helo_name {value!r} is not a host name")
        return value

    @field_validator("public_address")
    @classmethod
    def _check_public(cls, value: str) -> str:
        if value:
            try:
                return str(ipaddress.ip_address(value))
            except ValueError:
                raise ValueError(f"public_address {value!r} is not an IP address") from None
        return value

    @model_validator(mode="after")
    def _source_or_proxy(self) -> EgressConfig:
        if self.proxy and self.source_address:
            raise ValueError(f"egress {self.name!r}: set source_address or proxy, not both")
        return self

    @property
    def proxy_address(self) -> ProxyAddress | None:
        return parse_proxy_url(self.proxy) if self.proxy else None


def check_egresses(
    egresses: list[EgressConfig], routes: dict[str, list[str]], proxy: str,
    source_address: str | None,
) -> None:
    """The [callout] keys about egresses, taken together."""
    if egresses and proxy:
        raise ValueError("set [callout] proxy or [[callout.egress]] tables, not both")
    if proxy and source_address:
        raise ValueError("set [callout] proxy or source_address, not both")
    names = [egress.name for egress in egresses]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"egress name {duplicates[0]!r} is used twice")
    known = set(names) or {PROXY_EGRESS if proxy else DEFAULT_EGRESS}
    for key, chosen in routes.items():
        for name in chosen:
            if name not in known:
                raise ValueError(f"egress_routes {key!r}: no egress is named {name!r}")


def normalise_routes(value: dict[str, str | list[str]]) -> dict[str, list[str]]:
    """Keys lower case without the trailing dot; each value a non-empty list of names."""
    routes: dict[str, list[str]] = {}
    for key, chosen in value.items():
        names = [chosen] if isinstance(chosen, str) else list(chosen)
        if not names:
            raise ValueError(f"egress_routes {key!r}: name at least one egress")
        domain = key.strip().lower().rstrip(".")
        if not domain or any(c.isspace() for c in domain):
            raise ValueError(f"egress_routes {key!r} is not a domain or \"*\"")
        routes[domain] = names
    return routes
