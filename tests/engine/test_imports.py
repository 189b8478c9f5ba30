"""redis-py is loaded only by a configuration that names Redis: structural, not timed (the
memory it saves is in docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_startup import among, imported_by
from tests.peers.redis_server import redis_standalone, redis_url  # noqa: F401 - fixtures

ASSEMBLE_AND_CLOSE = """
import asyncio
from cbv.config import config_from_dict
from cbv.engine.assembly import assemble

config = config_from_dict({settings})
engine = assemble(config)
queue = None
if {with_queue}:
    from cbv.jobs.opening import open_queue

    queue = open_queue(config)

async def close() -> None:
    await engine.aclose()
    if queue is not None:
        await queue.aclose()

asyncio.run(close())
"""


def engine_and_queue(cache: dict[str, str], jobs: dict[str, str] | None) -> set[str]:
    """What a fresh interpreter holds after assembling an engine and, unless `jobs` is None,
    opening the job queue (as `cbv serve` does with jobs enabled) from these settings."""
    settings = {"cache": cache, "jobs": jobs or {}, "dns": {"nameservers": ["127.0.0.1"]}}
    return imported_by(ASSEMBLE_AND_CLOSE.format(settings=json.dumps(settings),
                                                 with_queue=jobs is not None))


@pytest.mark.parametrize("cache_url", ["memory://", "sqlite:///{tmp}/cache.sqlite3"])
def test_a_deployment_without_redis_never_imports_redis_py(tmp_path: Path,
                                                           cache_url: str) -> None:
    modules = engine_and_queue({"url": cache_url.format(tmp=tmp_path)},
                               {"queue": f"sqlite:///{tmp_path}/jobs.sqlite3"})
    assert "cbv.engine.limits" in modules, "the engine was assembled"
    assert among(modules, ("redis", "cbv.cache.redis_link", "cbv.cache.redis_backend",
                           "cbv.jobs.redis_queue")) == []


def test_an_engine_on_memory_imports_no_sqlite3() -> None:
    modules = engine_and_queue({"url": "memory://"}, None)
    assert "cbv.engine.limits" in modules, "the engine was assembled"
    assert among(modules, ("sqlite3", "cbv.cache.sqlite", "redis")) == []


def test_a_redis_cache_imports_redis_py_when_it_is_opened(redis_url: str) -> None:  # noqa: F811
    modules = engine_and_queue({"url": redis_url}, {})
    assert {"redis", "cbv.cache.redis_link", "cbv.jobs.redis_queue"} <= modules


def test_a_redis_job_queue_alone_imports_redis_py(redis_url: str) -> None:  # noqa: F811
    modules = engine_and_queue({"url": "memory://"}, {"queue": redis_url})
    assert "redis" in modules
    assert "cbv.cache.redis_link" in modules, "the queue's link to Redis"
    assert "cbv.cache.redis_backend" not in modules
