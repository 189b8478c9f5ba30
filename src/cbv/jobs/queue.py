"""The interface every job queue implements (Redis Streams, SQLite): one code path for both.

Work items are claimed with a lease: a worker that stops renewing it (a crash, kill -9)
leaves its items to be claimed again by another. Settling an item is atomic and happens
once: its final verdicts are stored (one per address, never replaced), the items to try
again are queued for later, and the job's counts move on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cbv.jobs.model import Final, JobSpec, JobState, JobStatus, Later, WorkItem


class QueueError(Exception):
    """The queue cannot be reached or used; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Claimed:
    token: str  # the queue's own handle (a stream entry id, a row id)
    item: WorkItem


@dataclass(frozen=True, slots=True)
class Settlement:
    applied: bool  # False: the item was settled already (another worker), nothing changed
    finished: bool  # this settlement gave the job its last final verdict


class JobQueue(Protocol):
    def description(self) -> str:
        """Where the queue lives, for logs (no password)."""
        ...

    async def submit(self, spec: JobSpec, items: Sequence[WorkItem]) -> None: ...

    async def claim(self, count: int, now: float) -> list[Claimed]:
        """Up to `count` items ready by `now`, including items whose lease ran out."""
        ...

    async def renew(self, claimed: Sequence[Claimed], now: float) -> None:
        """Keep the lease on items still being verified."""
        ...

    async def settle(self, claimed: Claimed, finals: Sequence[Final], later: Sequence[Later],
                     now: float) -> Settlement: ...

    async def spec(self, job_id: str) -> tuple[JobSpec, JobState] | None: ...

    async def status(self, job_id: str, now: float) -> JobStatus | None: ...

    async def results(self, job_id: str, start: int, count: int) -> list[tuple[int, str]]:
        """Result lines with index in [start, start + count), in index order."""
        ...

    async def cancel(self, job_id: str, now: float) -> JobState | None:
        """The job's state after the request; None for a job that does not exist."""
        ...

    async def recent(self, now: float, limit: int) -> list[JobStatus]:
        """The newest jobs still kept, newest first."""
        ...

    async def expire(self, now: float) -> int:
        """Forget jobs finished more than `keep` ago; how many went."""
        ...

    async def aclose(self) -> None: ...
