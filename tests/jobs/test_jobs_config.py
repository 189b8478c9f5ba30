"""Where `[jobs] queue` puts the queue, and its one-line errors."""

from __future__ import annotations

import pytest

from cbv.cache_location import CacheKind
from cbv.config import ConfigError, config_from_dict


@pytest.mark.parametrize(("cache", "queue", "kind", "where"), [
    ({}, "", CacheKind.SQLITE, ""),
    ({"path": "/var/lib/cbv/cache.sqlite3"}, "", CacheKind.SQLITE, "/var/lib/cbv/jobs.sqlite3"),
    ({"url": "memory://"}, "", CacheKind.SQLITE, ""),
    ({"url": "redis://10.1.2.3:6379/2"}, "", CacheKind.REDIS, "redis://10.1.2.3:6379/2"),
    ({"url": "redis://10.1.2.3:6379/2"}, "sqlite:///srv/jobs.db", CacheKind.SQLITE,
     "/srv/jobs.db"),
    ({}, "redis+cluster://10.0.0.1:7000", CacheKind.REDIS_CLUSTER, ""),
])
def test_the_queue_defaults_to_the_caches_redis_else_sqlite_beside_the_cache(
        cache: dict[str, str], queue: str, kind: CacheKind, where: str) -> None:
    config = config_from_dict({"cache": cache, "jobs": {"queue": queue}})
    location = config.jobs.location(config.cache)
    assert location.kind is kind
    assert (location.url or location.path) == where


@pytest.mark.parametrize(("jobs", "message"), [
    ({"queue": "memory://"}, "jobs.queue: 'memory://': a job queue is redis://, "
                             "redis+cluster:// or sqlite://"),
    ({"retry_delays": []}, "jobs.retry_delays: List should have at least 1 item"),
    ({"retry_delays": [0]}, "jobs.retry_delays.0: Input should be greater than 0"),
    ({"lease": 0.5}, "jobs.lease: Input should be greater than or equal to 1"),
])
def test_bad_values_are_one_line(jobs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config_from_dict({"jobs": jobs})
    assert str(raised.value).startswith(f"config: {message}")
