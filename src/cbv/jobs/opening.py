"""Build the job queue `[jobs] queue` names (or the default beside the cache); redis-py is
imported only for a Redis queue."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from cbv.cache_location import CacheKind
from cbv.config import Config
from cbv.jobs.queue import JobQueue
from cbv.jobs.sqlite_queue import SQLiteJobQueue

DEFAULT_FILE_NAME = "jobs.sqlite3"


def open_queue(config: Config) -> JobQueue:
    """Raises QueueError for a SQLite file that cannot be opened."""
    jobs = config.jobs
    location = jobs.location(config.cache)
    if location.kind is CacheKind.SQLITE:
        path = Path(location.path) if location.path else (
            Path(platformdirs.user_state_dir("cbv")) / DEFAULT_FILE_NAME)
        return SQLiteJobQueue(path, keep=jobs.keep, lease=jobs.lease)
    from cbv.jobs.redis_queue import RedisJobQueue

    return RedisJobQueue(location, keep=jobs.keep, lease=jobs.lease)
