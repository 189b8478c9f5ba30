"""The fleet's job queue on Redis Streams: one stream of work items read by a consumer
group (every `cbv serve` is a consumer), XAUTOCLAIM for items a dead worker left pending,
a sorted set of items waiting for their time, and a hash per job.

Every key carries one Cluster hash tag, so the scripts that settle an item (ack it, store
its final verdicts with HSETNX, queue its retries, count) run atomically on one node.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from cbv.cache.redis_link import REDIS_FAILURES, RedisClient, describe, make_client
from cbv.cache_location import CacheLocation
from cbv.jobs.model import Final, JobSpec, JobState, JobStatus, Later, WorkItem
from cbv.jobs.queue import Claimed, QueueError, Settlement
from cbv.model import Result

T = TypeVar("T")

PREFIX = "cbv:{jobs}"
STREAM = f"{PREFIX}:work"
LATER = f"{PREFIX}:later"
INDEX = f"{PREFIX}:index"
GROUP = "workers"
TIMEOUT = 5.0
PROMOTE_AT_ONCE = 1000
RESULTS_AT_ONCE = 1000

PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local item = cjson.decode(member)
  local job = ARGV[3] .. item.job
  if item.budget and redis.call('EXISTS', job) == 1 then
    redis.call('HINCRBY', job, 'waiting', -#item.entries)
  end
  item.budget = false
  redis.call('XADD', KEYS[2], '*', 'item', cjson.encode(item))
end
return #due
"""

SETTLE = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
local state = redis.call('HGET', KEYS[3], 'state')
if not state or state == 'done' or state == 'cancelled' then return 1 end
local pos = 5
local added = 0
for i = 1, tonumber(ARGV[pos]) do
  if redis.call('HSETNX', KEYS[4], ARGV[pos + 1], ARGV[pos + 2]) == 1 then
    redis.call('HINCRBY', KEYS[3], ARGV[pos + 3], 1)
    added = added + 1
  end
  pos = pos + 3
end
pos = pos + 1
for i = 1, tonumber(ARGV[pos]) do
  redis.call('ZADD', KEYS[2], ARGV[pos + 1], ARGV[pos + 2])
  local waiting = tonumber(ARGV[pos + 3])
  if waiting > 0 then redis.call('HINCRBY', KEYS[3], 'waiting', waiting) end
  pos = pos + 3
end
if added > 0 and redis.call('TTL', KEYS[4]) == -1 then
  redis.call('EXPIRE', KEYS[4], redis.call('TTL', KEYS[3]))
end
local done = redis.call('HINCRBY', KEYS[3], 'done', added)
if done >= tonumber(redis.call('HGET', KEYS[3], 'total')) then
  redis.call('HSET', KEYS[3], 'state', 'done', 'finished_at', ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[4], ARGV[4])
  return 2
end
if state == 'queued' then redis.call('HSET', KEYS[3], 'state', 'running') end
return 1
"""

CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state == 'done' or state == 'cancelled' then return state end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 'cancelled'
"""


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def results_key(job_id: str) -> str:
    return f"{PREFIX}:results:{job_id}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisJobQueue:
    def __init__(self, location: CacheLocation, *, keep: float, lease: float) -> None:
        self._where = describe(location)
        self._client: RedisClient = make_client(location, TIMEOUT)
        self._keep = int(keep)
        self._lease_ms = int(lease * 1000)
        self._consumer = f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self._promote = self._client.register_script(PROMOTE)
        self._settle = self._client.register_script(SETTLE)
        self._cancel = self._client.register_script(CANCEL)
        self._group_ready = False

    def description(self) -> str:
        return self._where

    async def _call(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        except REDIS_FAILURES as exc:
            raise QueueError(f"job queue {self._where}: {exc}") from None

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def submit(self, spec: JobSpec, items: Sequence[WorkItem]) -> None:
        async def work() -> None:
            await self._ensure_group()
            kept = int(spec.retry_horizon) + self._keep
            fields: dict[FieldT, EncodableT] = {
                "spec": spec.model_dump_json(), "state": JobState.QUEUED.value,
                "total": spec.total, "done": 0, "waiting": 0}
            if spec.total == 0:
                fields.update(state=JobState.DONE.value, finished_at=spec.created_at)
            # One MULTI/EXEC: a submitter that dies half-way leaves no job that can never
            # finish (every key shares the {jobs} hash tag, so Cluster takes it too).
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(job_key(spec.id), mapping=fields)
            pipe.expire(job_key(spec.id), kept)
            pipe.zadd(INDEX, {spec.id: spec.created_at})
            for item in items:
                pipe.xadd(STREAM, {"item": item.to_json()})
            await pipe.execute()

        await self._call(work)

    async def claim(self, count: int, now: float) -> list[Claimed]:
        async def work() -> list[Claimed]:
            await self._ensure_group()
            await self._promote(keys=[LATER, STREAM],
                                args=[now, PROMOTE_AT_ONCE, f"{PREFIX}:job:"])
            reclaimed = await self._client.xautoclaim(
                STREAM, GROUP, self._consumer, self._lease_ms, start_id="0-0", count=count)
            entries: list[Any] = list(reclaimed[1])
            if len(entries) < count:
                read: Any = await self._client.xreadgroup(
                    GROUP, self._consumer, {STREAM: ">"}, count=count - len(entries))
                for _stream, fresh in read or []:
                    entries.extend(fresh)
            claimed = []
            for entry_id, fields in entries:
                if not fields:  # deleted while pending: settled already
                    continue
                claimed.append(Claimed(_text(entry_id),
                                       WorkItem.from_json(fields[b"item"])))
            return claimed

        return await self._call(work)

    async def renew(self, claimed: Sequence[Claimed], now: float) -> None:
        if not claimed:
            return

        async def work() -> None:
            await self._client.xclaim(STREAM, GROUP, self._consumer, 0,
                                      [c.token for c in claimed], justid=True)

        await self._call(work)

    async def settle(self, claimed: Claimed, finals: Sequence[Final], later: Sequence[Later],
                     now: float) -> Settlement:
        job = claimed.item.job
        args: list[Any] = [GROUP, claimed.token, now, self._keep, len(finals)]
        for final in finals:
            args += [final.index, final.line, final.result.value]
        args.append(len(later))
        for entry in later:
            args += [entry.ready_at, entry.item.to_json(),
                     len(entry.item.entries) if entry.item.budget else 0]

        async def work() -> int:
            return int(await self._settle(
                keys=[STREAM, LATER, job_key(job), results_key(job)], args=args))

        outcome = await self._call(work)
        return Settlement(applied=outcome > 0, finished=outcome == 2)

    async def _job(self, job_id: str) -> dict[str, str] | None:
        raw = await self._client.hgetall(job_key(job_id))
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    async def spec(self, job_id: str) -> tuple[JobSpec, JobState] | None:
        fields = await self._call(lambda: self._job(job_id))
        if fields is None:
            return None
        return JobSpec.model_validate_json(fields["spec"]), JobState(fields["state"])

    @staticmethod
    def _status(fields: dict[str, str], now: float) -> JobStatus:
        spec = JobSpec.model_validate_json(fields["spec"])
        counts = {result: int(fields.get(result.value, 0)) for result in Result}
        finished = fields.get("finished_at")
        return JobStatus.build(spec, JobState(fields["state"]), counts,
                               int(fields.get("waiting", 0)),
                               float(finished) if finished else None, now)

    async def status(self, job_id: str, now: float) -> JobStatus | None:
        fields = await self._call(lambda: self._job(job_id))
        return None if fields is None else self._status(fields, now)

    async def results(self, job_id: str, start: int, count: int) -> list[tuple[int, str]]:
        indexes = list(range(start, start + count))

        async def work() -> list[Any]:
            return list(await self._client.hmget(results_key(job_id), indexes))

        lines = await self._call(work)
        return [(i, _text(line)) for i, line in zip(indexes, lines, strict=True)
                if line is not None]

    async def cancel(self, job_id: str, now: float) -> JobState | None:
        async def work() -> Any:
            return await self._cancel(keys=[job_key(job_id), results_key(job_id)],
                                      args=[now, self._keep])

        state = await self._call(work)
        return None if state is None else JobState(_text(state))

    async def recent(self, now: float, limit: int) -> list[JobStatus]:
        async def work() -> list[JobStatus]:
            found: list[JobStatus] = []
            ids = [_text(i) for i in await self._client.zrevrange(INDEX, 0, limit - 1)]
            for job_id in ids:
                fields = await self._job(job_id)
                if fields is None:
                    await self._client.zrem(INDEX, job_id)
                    continue
                found.append(self._status(fields, now))
            return found

        return await self._call(work)

    async def expire(self, now: float) -> int:
        """Redis expires job keys by itself; this drops index entries of jobs gone."""

        async def work() -> int:
            gone = 0
            for raw in await self._client.zrangebyscore(INDEX, "-inf", now - self._keep):
                job_id = _text(raw)
                if not await self._client.exists(job_key(job_id)):
                    gone += await self._client.zrem(INDEX, job_id)
            return gone

        return await self._call(work)

    async def aclose(self) -> None:
        await self._client.aclose()
