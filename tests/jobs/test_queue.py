"""The JobQueue contract, run against SQLite and against real Redis (standalone, Cluster)."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from pathlib import Path

import pytest
import redis.asyncio

from cbv.cache_location import parse_cache_location
from cbv.engine.polling import poll_until
from cbv.jobs.model import Entry, Final, JobSpec, JobState, Later, WorkItem
from cbv.jobs.queue import Claimed, JobQueue, QueueError
from cbv.jobs.redis_queue import INDEX, STREAM, RedisJobQueue, job_key, results_key
from cbv.jobs.sqlite_queue import SQLiteJobQueue
from cbv.model import Reason, Result, Verdict, utcnow
from tests.jobs.conftest import KEEP, QueueFactory

LEASE = 60.0


def spec(total: int, job_id: str = "job1", now: float | None = None) -> JobSpec:
    return JobSpec(id=job_id, retry_delays=[1.0], retry_horizon=600.0, total=total,
                   created_at=time.time() if now is None else now)


def final(index: int, address: str, result: Result = Result.PASS) -> Final:
    reason = {Result.PASS: Reason.ACCEPTED, Result.FAIL: Reason.MAILBOX_UNKNOWN,
              Result.TRANSIENT: Reason.GREYLISTED, Result.UNKNOWN: Reason.POLICY_REJECTION}
    verdict = Verdict(address=address, result=result, reason=reason[result], checked_at=utcnow())
    return Final.of(index, verdict, 1)


def items(job: str, addresses: list[str]) -> list[WorkItem]:
    return [WorkItem(job, (Entry(i, a),)) for i, a in enumerate(addresses)]


async def claim_all(queue: JobQueue, want: int, now: float | None = None) -> list[Claimed]:
    """Claim until `want` items are in hand (a lease may have to run out first)."""
    claimed: list[Claimed] = []

    async def more() -> int:
        claimed.extend(await queue.claim(want - len(claimed), now or time.time()))
        return len(claimed)

    await poll_until(more, lambda count: count >= want, 10.0)
    assert len(claimed) == want, f"{len(claimed)} of {want} items claimed"
    return claimed


async def test_every_address_is_settled_once_and_read_back_in_input_order(
        queues: QueueFactory) -> None:
    queue = await queues(LEASE)
    addresses = [f"u{i}@d{i % 3}.test" for i in range(7)]
    await queue.submit(spec(7), items("job1", addresses))
    claimed = await claim_all(queue, 7)
    assert sorted(c.item.entries[0].index for c in claimed) == list(range(7))
    assert await queue.claim(5, time.time()) == []
    for c in reversed(claimed):
        entry = c.item.entries[0]
        settled = await queue.settle(c, [final(entry.index, entry.address)], [], time.time())
        assert settled.applied
    assert settled.finished
    again = await queue.settle(claimed[0], [final(0, addresses[0], Result.FAIL)], [], time.time())
    assert not again.applied
    lines = await queue.results("job1", 0, 100)
    assert [i for i, _ in lines] == list(range(7))
    assert [Verdict.model_validate_json(line).address for _, line in lines] == addresses
    status = await queue.status("job1", time.time())
    assert status is not None
    assert (status.state, status.done, status.counts[Result.PASS]) == (JobState.DONE, 7, 7)
    assert await queue.results("job1", 3, 2) == lines[3:5]


async def test_an_item_whose_lease_ran_out_goes_to_another_worker_and_counts_once(
        queues: QueueFactory) -> None:
    first = await queues(0.2)
    second = await queues(0.2)
    await first.submit(spec(1), items("job1", ["a@x.test"]))
    [held] = await claim_all(first, 1)
    [taken] = await claim_all(second, 1, time.time() + 1.0)  # the first worker went silent
    assert taken.item.entries == held.item.entries
    assert (await second.settle(taken, [final(0, "a@x.test")], [], time.time())).finished
    late = await first.settle(held, [final(0, "a@x.test", Result.FAIL)], [], time.time())
    assert not late.finished
    [(_, line)] = await first.results("job1", 0, 10)
    assert Verdict.model_validate_json(line).result is Result.PASS
    status = await first.status("job1", time.time())
    assert status is not None and status.done == 1


async def test_a_renewed_lease_keeps_the_item(queues: QueueFactory) -> None:
    queue = await queues(LEASE)
    other = await queues(LEASE)
    await queue.submit(spec(1), items("job1", ["a@x.test"]))
    held = await claim_all(queue, 1)
    await queue.renew(held, time.time())
    assert await other.claim(1, time.time()) == []


async def test_items_queued_for_later_wait_for_their_time_and_budget_waits_are_counted(
        queues: QueueFactory) -> None:
    queue = await queues(LEASE)
    now = time.time()
    await queue.submit(spec(2, now=now), items("job1", ["a@x.test", "b@x.test"]))
    first, second = await claim_all(queue, 2, now)
    waiting = WorkItem("job1", first.item.entries, budget=True)
    retry = WorkItem("job1", (Entry(second.item.entries[0].index, "b@x.test", 1),))
    await queue.settle(first, [], [Later(now + 30, waiting)], now)
    await queue.settle(second, [], [Later(now + 60, retry)], now)
    status = await queue.status("job1", now)
    assert status is not None
    assert (status.state, status.waiting_on_budget, status.done) == (JobState.RUNNING, 1, 0)
    assert await queue.claim(5, now + 10) == []
    [budget_item] = await queue.claim(5, now + 40)
    assert budget_item.item.entries == first.item.entries
    status = await queue.status("job1", now)
    assert status is not None and status.waiting_on_budget == 0
    [retried] = await claim_all(queue, 1, now + 70)
    assert retried.item.entries[0].attempts == 1


async def test_a_cancelled_job_stops_and_keeps_its_results(queues: QueueFactory) -> None:
    queue = await queues(LEASE)
    await queue.submit(spec(3), items("job1", ["a@x.test", "b@x.test", "c@x.test"]))
    first = (await claim_all(queue, 1))[0]
    entry = first.item.entries[0]
    await queue.settle(first, [final(entry.index, entry.address)], [], time.time())
    assert await queue.cancel("job1", time.time()) is JobState.CANCELLED
    assert await queue.cancel("job1", time.time()) is JobState.CANCELLED
    assert await queue.cancel("nope", time.time()) is None
    for leftover in await queue.claim(5, time.time()):
        assert (await queue.settle(leftover, [final(9, "x@x.test")], [], time.time())).applied
    status = await queue.status("job1", time.time())
    assert status is not None and (status.state, status.done) == (JobState.CANCELLED, 1)
    assert len(await queue.results("job1", 0, 10)) == 1
    assert [job.id for job in await queue.recent(time.time(), 10)] == ["job1"]


async def test_unknown_jobs_have_no_status_and_no_results(queues: QueueFactory) -> None:
    queue = await queues(LEASE)
    assert await queue.status("nope", time.time()) is None
    assert await queue.spec("nope") is None
    assert await queue.results("nope", 0, 10) == []


async def finish_one(queue: JobQueue, now: float) -> None:
    await queue.submit(spec(1, now=now), items("job1", ["a@x.test"]))
    [held] = await claim_all(queue, 1, now)
    assert (await queue.settle(held, [final(0, "a@x.test")], [], now)).finished


async def test_sqlite_forgets_a_finished_job_after_keep(tmp_path: Path) -> None:
    queue = SQLiteJobQueue(tmp_path / "jobs.sqlite3", keep=KEEP, lease=LEASE)
    now = time.time()
    await finish_one(queue, now)
    assert await queue.expire(now + KEEP - 1) == 0
    assert await queue.expire(now + KEEP + 1) == 1
    assert await queue.status("job1", now) is None
    assert await queue.results("job1", 0, 10) == []
    await queue.aclose()


@pytest.mark.peers
async def test_redis_lets_a_finished_job_expire_after_keep(redis_url: str) -> None:
    queue = RedisJobQueue(parse_cache_location(redis_url), keep=KEEP, lease=LEASE)
    client = redis.asyncio.Redis.from_url(redis_url)
    now = time.time()
    await queue.submit(spec(2, "job0", now), items("job0", ["a@x.test", "b@x.test"]))
    first, second = await claim_all(queue, 2, now)
    await queue.settle(first, [final(first.item.entries[0].index, "a@x.test")], [], now)
    horizon_and_keep = 600 + KEEP
    assert KEEP < await client.ttl(results_key("job0")) <= horizon_and_keep, "never for ever"
    await queue.settle(second, [final(second.item.entries[0].index, "b@x.test")], [], now)
    await finish_one(queue, time.time())
    for key in (job_key("job1"), results_key("job1")):
        assert 0 < await client.ttl(key) <= KEEP
    await client.aclose()
    await queue.aclose()


class CuttingProxy:
    """A loopback proxy to Redis that drops each connection once the client has sent
    `budget` bytes: a submitter that dies half-way through its commands."""

    def __init__(self, upstream: tuple[str, int], budget: int) -> None:
        self._upstream = upstream
        self._budget = budget
        self.cuts = 0

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"redis://{host}:{port}/0"

    async def __aexit__(self, *_exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
                     ) -> None:
        server_r, server_w = await asyncio.open_connection(*self._upstream)

        async def upward() -> None:
            sent = 0
            while chunk := await client_r.read(65_536):
                chunk = chunk[: self._budget - sent]
                server_w.write(chunk)
                sent += len(chunk)
                if sent >= self._budget:
                    self.cuts += 1
                    return
                await server_w.drain()

        async def downward() -> None:
            while chunk := await server_r.read(65_536):
                client_w.write(chunk)
                await client_w.drain()

        back = asyncio.create_task(downward())
        try:
            await upward()
        finally:
            back.cancel()
            for writer in (server_w, client_w):
                writer.transport.abort()


@pytest.mark.peers
async def test_a_redis_submit_cut_half_way_leaves_no_job_behind(redis_url: str) -> None:
    """All of a job or none of it: a half-queued job could never finish."""
    location = parse_cache_location(redis_url)
    upstream = urllib.parse.urlsplit(redis_url)
    addresses = [f"user{i}@domain{i}.test" for i in range(2_000)]
    assert upstream.hostname and upstream.port
    proxy = CuttingProxy((upstream.hostname, upstream.port), 60_000)
    async with proxy as cut_url:
        cut = RedisJobQueue(parse_cache_location(cut_url), keep=KEEP, lease=LEASE)
        with pytest.raises(QueueError):
            await cut.submit(spec(len(addresses)), items("job1", addresses))
        await cut.aclose()
    assert proxy.cuts >= 1
    client = redis.asyncio.Redis.from_url(redis_url)
    assert not await client.exists(job_key("job1"))
    assert await client.xlen(STREAM) == 0
    assert await client.zcard(INDEX) == 0
    queue = RedisJobQueue(location, keep=KEEP, lease=LEASE)
    await queue.submit(spec(len(addresses)), items("job1", addresses))
    assert await client.xlen(STREAM) == len(addresses)
    await queue.aclose()
    await client.aclose()
