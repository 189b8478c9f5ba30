"""The worker every `cbv serve` with `[jobs] enabled = true` runs: it claims work items,
verifies each (one domain, one session's worth), settles it, and keeps its leases fresh.

The queue orders items by when they are ready, and an item that met a budget goes back
with the time that budget frees, so no worker sleeps on one host while others are free.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cbv.cache.backend import Clock
from cbv.jobs.model import FINISHED, JobSpec, JobState, JobStatus
from cbv.jobs.observer import NO_JOB_OBSERVER, JobObserver
from cbv.jobs.queue import Claimed, JobQueue, QueueError
from cbv.jobs.schedule import plan
from cbv.model import Reason, Verdict

LOG = logging.getLogger("cbv.jobs")
IDLE_POLL = 0.25  # seconds between looks at an empty queue
SPEC_FRESH = 2.0  # seconds a job's spec and state are trusted (a cancel shows within this)
EXPIRE_EVERY = 600.0

Verify = Callable[[list[str], bool], Awaitable[list[Verdict]]]  # (addresses, use_cache)
# A rate_limited verdict -> seconds until its destination is likely to take a callout again
BudgetWait = Callable[[Verdict], Awaitable[float]]
Notify = Callable[[JobSpec, JobStatus], Awaitable[None]]


@dataclass(slots=True)
class _Known:
    spec: JobSpec
    state: JobState
    fetched: float


class JobWorker:
    def __init__(self, queue: JobQueue, verify: Verify, *, concurrency: int, lease: float,
                 budget_wait: BudgetWait, notify: Notify, clock: Clock = time.time,
                 observer: JobObserver = NO_JOB_OBSERVER) -> None:
        self._queue = queue
        self._verify = verify
        self._concurrency = concurrency
        self._lease = lease
        self._budget_wait = budget_wait
        self._notify = notify
        self._clock = clock
        self._observer = observer
        self._working: dict[asyncio.Task[None], Claimed] = {}
        self._known: dict[str, _Known] = {}
        self._queue_down = False
        self._stopping = asyncio.Event()
        self._grace = 0.0
        self._running = False
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        """Until `stop()` or cancelled. After `stop()` the items in hand are settled within
        its grace, their leases still renewed; items in hand when cancelled (or past the
        grace) go to other workers when their lease ends."""
        housekeeping = asyncio.create_task(self._housekeeping())
        stopping = asyncio.create_task(self._stopping.wait())
        self._running = True
        try:
            while not self._stopping.is_set():
                await self._fill()
                await asyncio.wait({stopping, *self._working}, timeout=IDLE_POLL,
                                   return_when=asyncio.FIRST_COMPLETED)
            if self._working:
                await asyncio.wait(set(self._working), timeout=self._grace)
        finally:
            housekeeping.cancel()
            stopping.cancel()
            for task in self._working:
                task.cancel()
            await asyncio.gather(housekeeping, stopping, *self._working, return_exceptions=True)
            self._running = False
            self._stopped.set()

    async def stop(self, grace: float) -> None:
        """Claim nothing more; let the items in hand be settled within `grace` seconds,
        and return once `run()` has ended."""
        self._grace = grace
        self._stopping.set()
        if self._running:
            await self._stopped.wait()

    async def _fill(self) -> None:
        free = self._concurrency - len(self._working)
        if free <= 0:
            return
        try:
            claimed = await self._queue.claim(free, self._clock())
        except QueueError as exc:
            self._down(exc)
            return
        self._up()
        for item in claimed:
            task = asyncio.create_task(self._work(item))
            self._working[task] = item
            task.add_done_callback(self._finished)
        self._observer.in_hand(len(self._working))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._working.pop(task, None)
        self._observer.in_hand(len(self._working))
        if not task.cancelled() and (exc := task.exception()) is not None:
            LOG.error("job work item failed; another worker retries it after its lease: %s",
                      exc)

    def _down(self, exc: QueueError) -> None:
        if not self._queue_down:
            LOG.error("job queue unreachable; retrying: %s", exc)
        self._queue_down = True

    def _up(self) -> None:
        if self._queue_down:
            LOG.info("job queue reachable again")
        self._queue_down = False

    async def _job(self, job_id: str) -> _Known | None:
        now = self._clock()
        known = self._known.get(job_id)
        if known is None or now - known.fetched > SPEC_FRESH:
            found = await self._queue.spec(job_id)
            if found is None:
                self._known.pop(job_id, None)
                return None
            known = self._known[job_id] = _Known(found[0], found[1], now)
        return known

    async def _work(self, claimed: Claimed) -> None:
        item = claimed.item
        known = await self._job(item.job)
        if known is None or known.state in FINISHED:
            await self._queue.settle(claimed, [], [], self._clock())
            return
        addresses = [entry.address for entry in item.entries]
        first_try = all(entry.attempts == 0 for entry in item.entries)
        verdicts = await self._verify(addresses, first_try)
        now = self._clock()
        limited = next((v for v in verdicts if v.reason is Reason.RATE_LIMITED), None)
        budget_wait = await self._budget_wait(limited) if limited is not None else 0.0
        decided = plan(known.spec, item, verdicts, now, budget_wait)
        settled = await self._queue.settle(claimed, decided.finals, decided.later, now)
        if settled.applied:
            later = [len(entry.item.entries) for entry in decided.later]
            budget = [len(entry.item.entries) for entry in decided.later if entry.item.budget]
            self._observer.settled(decided.finals, sum(later) - sum(budget), sum(budget))
        if settled.finished:
            self._known.pop(item.job, None)
            status = await self._queue.status(item.job, now)
            if status is not None:
                LOG.info("job %s done: %d addresses", item.job, status.total)
                await self._notify(known.spec, status)

    async def _housekeeping(self) -> None:
        """Renew the leases of items in hand; now and then, forget expired jobs."""
        last_expiry = 0.0
        while True:
            await asyncio.sleep(self._lease / 3)
            now = self._clock()
            try:
                await self._queue.renew(list(self._working.values()), now)
                if now - last_expiry > EXPIRE_EVERY:
                    last_expiry = now
                    await self._queue.expire(now)
            except QueueError as exc:
                self._down(exc)
