"""Where the cache lives, read from `cache.url` and `cache.path`: pure and at the bottom
layer, so the config can check it and the cache can open it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from cbv.endpoint import split_host_port

URL_FORMS = "memory://, sqlite:///path, redis://host:port/db or redis+cluster://host:port,..."


class CacheKind(StrEnum):
    MEMORY = "memory"
    SQLITE = "sqlite"
    REDIS = "redis"
    REDIS_CLUSTER = "redis+cluster"


@dataclass(frozen=True, slots=True)
class CacheLocation:
    kind: CacheKind
    path: str = ""  # SQLite: "" means the user's state directory
    url: str = ""  # Redis standalone: the URL as redis-py reads it
    nodes: tuple[tuple[str, int], ...] = ()  # Redis Cluster: the startup nodes
    password: str | None = None  # Redis Cluster


def _cluster_nodes(netloc: str, url: str) -> tuple[tuple[str, int], ...]:
    nodes: list[tuple[str, int]] = []
    for entry in netloc.split(","):
        try:
            nodes.append(split_host_port(entry))
        except ValueError as exc:
            raise ValueError(f"redis+cluster nodes must be host:port in {url!r}: {exc}") from None
    return tuple(nodes)


def parse_cache_location(url: str, path: str = "") -> CacheLocation:
    """Raise ValueError with a one-line reason for anything that is not a usable location."""
    if not url:
        return CacheLocation(CacheKind.SQLITE, path=path)
    if path:
        raise ValueError("cache.path applies only when cache.url is empty")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{url!r} is not a URL; use {URL_FORMS}")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest:
            raise ValueError(f"memory:// takes nothing after the scheme, got {url!r}")
        return CacheLocation(CacheKind.MEMORY)
    if scheme == "sqlite":
        return CacheLocation(CacheKind.SQLITE, path="/" + rest.lstrip("/") if rest else "")
    if scheme in ("redis", "rediss"):
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"the database in {url!r} must be a number")
        return CacheLocation(CacheKind.REDIS, url=url)
    if scheme == "redis+cluster":
        credentials, at, netloc = rest.rpartition("@")
        netloc = netloc.split("/", 1)[0]
        if not netloc:
            raise ValueError(f"no nodes in {url!r}")
        password = unquote(credentials.partition(":")[2]) if at else None
        return CacheLocation(
            CacheKind.REDIS_CLUSTER, nodes=_cluster_nodes(netloc, url), password=password or None
        )
    raise ValueError(f"unsupported scheme {scheme!r}; use {URL_FORMS}")
