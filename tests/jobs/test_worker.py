"""The worker on the SQLite queue with a scripted verify: what it settles, when it waits on
budgets, whom it tells, and how it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest_asyncio

from cbv.config import JobsConfig
from cbv.engine.polling import poll_until
from cbv.jobs.model import JobSpec, JobState, JobStatus, JobVerdict
from cbv.jobs.service import JobOptions, JobService
from cbv.jobs.sqlite_queue import SQLiteJobQueue
from cbv.jobs.worker import JobWorker
from cbv.model import Reason, Result, Verdict, utcnow

WAIT = 10.0


@dataclass
class Scripted:
    """Verdicts by address, one reason per call; a call may be held until released."""

    reasons: dict[str, list[Reason]]
    calls: list[list[str]] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    told: list[JobStatus] = field(default_factory=list)
    limited: list[str] = field(default_factory=list)

    async def verify(self, addresses: list[str], use_cache: bool) -> list[Verdict]:
        self.calls.append(addresses)
        self.called.set()
        await self.release.wait()
        return [Verdict(address=a, result=(reason := self.reasons[a].pop(0)).result,
                        reason=reason, checked_at=utcnow()) for a in addresses]

    async def budget_wait(self, limited: Verdict) -> float:
        self.limited.append(limited.address)
        return 0.05

    async def notify(self, spec: JobSpec, status: JobStatus) -> None:
        self.told.append(status)


@dataclass
class Rig:
    service: JobService
    worker: JobWorker
    script: Scripted
    task: asyncio.Task[None]


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    queue = SQLiteJobQueue(tmp_path / "jobs.sqlite3", keep=3600, lease=60)
    script = Scripted({})
    worker = JobWorker(queue, script.verify, concurrency=4, lease=60,
                       budget_wait=script.budget_wait, notify=script.notify)
    task = asyncio.create_task(worker.run())
    jobs = JobsConfig(retry_delays=[0.05], webhook_allow=["http://127.0.0.1:9/"])
    yield Rig(JobService(queue, jobs, per_item=10), worker, script, task)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await queue.aclose()


async def finished(service: JobService, job_id: str) -> JobStatus:
    """Polling the queue, as the API's clients do."""
    status = await poll_until(lambda: service.status(job_id),
                              lambda s: s is not None and s.state is JobState.DONE, WAIT)
    assert status is not None and status.state is JobState.DONE, status
    return status


async def test_a_budget_wait_is_no_attempt_and_the_webhook_is_told_once(rig: Rig) -> None:
    rig.script.reasons = {"a@x.test": [Reason.RATE_LIMITED, Reason.GREYLISTED,
                                       Reason.ACCEPTED]}
    rig.script.release.set()
    spec = await rig.service.submit(["a@x.test"], JobOptions(webhook="http://127.0.0.1:9/"))
    status = await finished(rig.service, spec.id)
    assert status.counts[Result.PASS] == 1 and status.waiting_on_budget == 0
    [(_, line)] = await rig.service.queue.results(spec.id, 0, 10)
    assert JobVerdict.model_validate_json(line).attempts == 2, "the budget wait is not one"
    assert rig.script.calls == [["a@x.test"]] * 3
    assert rig.script.limited == ["a@x.test"], "asked once, about the verdict limited"
    assert [told.id for told in rig.script.told] == [spec.id]


async def test_stopping_lets_the_items_in_hand_be_settled(rig: Rig) -> None:
    rig.script.reasons = {"a@x.test": [Reason.MAILBOX_UNKNOWN]}
    spec = await rig.service.submit(["a@x.test"], JobOptions())
    async with asyncio.timeout(WAIT):
        await rig.script.called.wait()
    stopping = asyncio.create_task(rig.worker.stop(grace=WAIT))
    rig.script.release.set()
    async with asyncio.timeout(WAIT):
        await stopping
        await rig.task
    status = await rig.service.status(spec.id)
    assert status is not None and (status.state, status.counts[Result.FAIL]) == (JobState.DONE, 1)
