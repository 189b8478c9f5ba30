"""Configuration: TOML validated by pydantic; unknown keys are errors that name the key."""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_CONFIG_PATH = Path("/etc/cbv/cbv.toml")


class ConfigError(Exception):
    """A configuration problem, worded for the one-line message a user sees."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


def _parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    """Split "host", "host:port", "[v6]:port" or "v6" into its parts."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad host:port {value!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"bad host:port {value!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {value!r}")
    return host, int(port_text)


class DnsConfig(_Section):
    nameservers: list[str] = Field(
        default_factory=list,
        description="'ip' or 'ip:port'; empty means the system resolver",
    )
    timeout: PositiveSeconds = 5.0
    cache_size: int = Field(default=10_000, ge=0)
    negative_ttl: int = Field(default=300, ge=0, description="cap for NXDOMAIN/NODATA caching")

    @field_validator("nameservers")
    @classmethod
    def _check_nameservers(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, _ = _parse_hostport(entry, 53)
            ipaddress.ip_address(host)
        return value

    def nameserver_addresses(self) -> list[tuple[str, int]]:
        return [_parse_hostport(entry, 53) for entry in self.nameservers]


class CalloutConfig(_Section):
    port: int = Field(default=25, gt=0, lt=65536)
    helo_name: str = Field(default_factory=socket.getfqdn)
    mail_from: str = ""
    fallback_mail_from: str = "postmaster"
    try_null_sender_first: bool = True
    try_vrfy_first: bool = False
    detect_catch_all: bool = True
    starttls: Literal["opportunistic", "never"] = "opportunistic"
    connect_timeout: PositiveSeconds = 10.0
    command_timeout: PositiveSeconds = 10.0
    total_timeout: PositiveSeconds = 30.0
    max_mx_hosts: int = Field(default=3, ge=1, le=20)
    max_rcpts_per_session: int = Field(default=10, ge=1, le=100)
    max_reply_bytes: int = Field(default=65_536, ge=1024)
    source_address: str | None = None
    map: dict[str, str] = Field(default_factory=dict)
    routes: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("helo_name")
    @classmethod
    def _check_helo(cls, value: str) -> str:
        if not value or any(c.isspace() or c in "<>" for c in value):
            raise ValueError(f"helo_name {value!r} is not a host name")
        return value

    @field_validator("map")
    @classmethod
    def _lower_map(cls, value: dict[str, str]) -> dict[str, str]:
        return {k.lower().rstrip("."): v.lower().rstrip(".") for k, v in value.items()}

    @field_validator("routes")
    @classmethod
    def _check_routes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for hosts in value.values():
            if not hosts:
                raise ValueError("a route needs at least one host")
            for host in hosts:
                _parse_hostport(host, 25)
        return {k.lower().rstrip("."): v for k, v in value.items()}

    def route_targets(self, domain: str) -> list[tuple[str, int]] | None:
        hosts = self.routes.get(domain)
        if hosts is None:
            return None
        return [_parse_hostport(host, self.port) for host in hosts]


class SecurityConfig(_Section):
    allowed_target_networks: list[str] = Field(default_factory=list)

    @field_validator("allowed_target_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value


class CacheConfig(_Section):
    url: str = ""  # "" = SQLite in the user's state directory
    pass_ttl: int = Field(default=7 * 86_400, ge=0)
    pass_refresh: int = Field(default=86_400, ge=0)
    fail_ttl: int = Field(default=3 * 3_600, ge=0)
    transient_ttl: int = Field(default=300, ge=0)
    unknown_ttl: int = Field(default=3_600, ge=0)


class ServerConfig(_Section):
    """Listeners: "host:port" or "unix:/path"; "" turns one off."""

    policy: str = "127.0.0.1:10040"
    smtpcbd: str = "127.0.0.1:4571"
    milter: str = ""
    http: str = ""


class PolicyConfig(_Section):
    phase: Literal["mailfrom", "rcptto"] = "mailfrom"
    verify: Literal["sender", "recipient"] = "sender"
    on_fail: Literal["reject", "quarantine", "accept"] = "reject"
    on_transient: Literal["defer", "accept"] = "defer"
    on_unknown: Literal["accept"] = "accept"
    dry_run: bool = False


class EngineConfig(_Section):
    max_concurrency: int = Field(default=1000, ge=1, le=100_000)


class Config(_Section):
    dns: DnsConfig = Field(default_factory=DnsConfig)
    callout: CalloutConfig = Field(default_factory=CalloutConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    else:
        message = first["msg"].removeprefix("Value error, ")
    more = len(error.errors()) - 1
    suffix = f" (and {more} more)" if more else ""
    return f"{source}: {location}: {message}{suffix}"


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def load_config(path: str | Path | None = None) -> Config:
    """--config, else $CBV_CONFIG, else /etc/cbv/cbv.toml if present, else defaults."""
    chosen = path or os.environ.get("CBV_CONFIG") or None
    if chosen is None:
        if not DEFAULT_CONFIG_PATH.exists():
            return Config()
        chosen = DEFAULT_CONFIG_PATH
    source = str(chosen)
    try:
        data = tomllib.loads(Path(chosen).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    return config_from_dict(data, source)
