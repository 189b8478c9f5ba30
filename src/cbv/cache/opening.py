"""Build the backend that `cache.url` (or `cache.path`) names. The SQLite and Redis backends
are imported here, for the URL that names them: a deployment without Redis never loads
redis-py (a large import), one on memory:// not even sqlite3. The memory backend is always
there, as Redis's fallback."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cbv.cache.backend import CacheBackend, Clock
from cbv.cache.memory import MemoryBackend
from cbv.cache_location import CacheKind
from cbv.config import CacheConfig

if TYPE_CHECKING:
    from cbv.cache.redis_link import RedisLink


@dataclass(frozen=True, slots=True)
class OpenedCache:
    backend: CacheBackend
    redis: RedisLink | None = None  # set for Redis, whose link single-flight and limits share


def open_cache(
    config: CacheConfig, *, clock: Clock = time.time, fall_back: bool = True
) -> OpenedCache:
    """`fall_back`: serve from a local memory cache while Redis is down (the daemon);
    without it Redis failures are CacheErrors (the CLI). Raises CacheError for a
    SQLite file that cannot be opened."""
    location = config.location()
    if location.kind is CacheKind.MEMORY:
        return OpenedCache(MemoryBackend(config.memory_entries, clock))
    if location.kind is CacheKind.SQLITE:
        from cbv.cache.sqlite import SQLiteBackend

        return OpenedCache(
            SQLiteBackend(
                Path(location.path) if location.path else None,
                memory_entries=config.memory_entries,
                memory_ttl=config.memory_ttl,
                clock=clock,
            )
        )
    from cbv.cache.redis_backend import RedisBackend
    from cbv.cache.redis_link import RedisLink

    link = RedisLink(location, config)
    fallback = MemoryBackend(config.memory_entries, clock) if fall_back else None
    return OpenedCache(RedisBackend(link, clock=clock, fallback=fallback), link)
