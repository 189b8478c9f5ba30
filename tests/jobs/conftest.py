from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from cbv.cache_location import parse_cache_location
from cbv.jobs.queue import JobQueue
from cbv.jobs.redis_queue import RedisJobQueue
from cbv.jobs.sqlite_queue import SQLiteJobQueue
from tests.peers.redis_server import (  # noqa: F401 - fixtures
    redis_cluster,
    redis_cluster_url,
    redis_standalone,
    redis_url,
)

KEEP = 3600.0
QueueFactory = Callable[[float], Awaitable[JobQueue]]  # lease -> a queue sharing one store


@pytest_asyncio.fixture(params=[
    "sqlite",
    pytest.param("redis", marks=pytest.mark.peers),
    pytest.param("redis-cluster", marks=pytest.mark.peers),
])
async def queues(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> AsyncIterator[QueueFactory]:
    """Queues on one store: for Redis, each is another worker of the fleet."""
    opened: list[JobQueue] = []

    async def factory(lease: float) -> JobQueue:
        queue: JobQueue
        if request.param == "sqlite":
            queue = SQLiteJobQueue(tmp_path / "jobs.sqlite3", keep=KEEP, lease=lease)
        else:
            fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
            url = request.getfixturevalue(fixture) if not opened else opened_url[0]
            opened_url[:] = [url]
            queue = RedisJobQueue(parse_cache_location(url), keep=KEEP, lease=lease)
        opened.append(queue)
        return queue

    opened_url: list[str] = []
    yield factory
    for queue in opened:
        await queue.aclose()
