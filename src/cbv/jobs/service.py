"""Jobs as the HTTP API and the status page see them: submit a list, ask how it goes,
stream its results in input order, cancel it."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from itertools import zip_longest
from typing import Annotated

from pydantic import BaseModel, Field

from cbv.cache.backend import Clock
from cbv.config import JobsConfig
from cbv.jobs.model import Entry, JobSpec, JobState, JobStatus, JobVerdict, WorkItem, new_job_id
from cbv.jobs.queue import JobQueue
from cbv.verdict_csv import CSV_COLUMNS, csv_cells, csv_line

RESULTS_AT_ONCE = 1000
WEBHOOK = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!-~]*)?$"
RECENT_JOBS = 20


class JobOptions(BaseModel):
    """What a submission may set beside its list."""

    name: str = Field(default="", max_length=200, description="shown in status and logs")
    webhook: str | None = Field(
        default=None, max_length=2048, pattern=WEBHOOK,
        description="an http(s) URL POSTed the job's status once it is done; redirects are "
        "not followed")
    retry_delays: list[Annotated[float, Field(gt=0, le=86_400)]] | None = Field(
        default=None, min_length=1, max_length=20,
        description="seconds before each new attempt at a transient address ([jobs] default)")
    retry_horizon: float | None = Field(
        default=None, gt=0, le=30 * 86_400,
        description="seconds after submission past which transient addresses are final")


class WebhookRefused(Exception):
    """The submission names a webhook outside `[jobs] webhook_allow`."""


def webhook_allowed(url: str, prefixes: Sequence[str]) -> bool:
    """Same scheme and host, the prefix's port if it names one, and a path under its path:
    compared part by part, so "https://hooks.test" never admits "https://hooks.test.evil"."""
    try:
        wanted = urllib.parse.urlsplit(url)
        port = wanted.port
    except ValueError:
        return False
    for prefix in prefixes:
        allowed = urllib.parse.urlsplit(prefix)
        if (wanted.scheme == allowed.scheme and wanted.hostname == allowed.hostname
                and (allowed.port is None or port == allowed.port)
                and (wanted.path or "/").startswith(allowed.path or "/")):
            return True
    return False


def work_items(job_id: str, addresses: Sequence[str], per_item: int) -> list[WorkItem]:
    """Addresses grouped by domain, `per_item` at most, the domains interleaved so the
    first items spread over many destinations instead of queueing on one."""
    groups: dict[str, list[Entry]] = {}
    for index, address in enumerate(addresses):
        domain = address.rpartition("@")[2].lower().rstrip(".")
        groups.setdefault(domain, []).append(Entry(index, address))
    chunked = [[tuple(group[start:start + per_item]) for start in range(0, len(group), per_item)]
               for group in groups.values()]
    return [WorkItem(job_id, chunk) for round_ in zip_longest(*chunked) for chunk in round_
            if chunk is not None]


class JobService:
    def __init__(self, queue: JobQueue, config: JobsConfig, per_item: int,
                 clock: Clock = time.time) -> None:
        self.queue = queue
        self._config = config
        self._per_item = per_item
        self._clock = clock

    async def submit(self, addresses: Sequence[str], options: JobOptions) -> JobSpec:
        """Raises WebhookRefused, in one line, for a webhook the operator did not allow."""
        if options.webhook and not webhook_allowed(options.webhook, self._config.webhook_allow):
            raise WebhookRefused(f"webhook {options.webhook!r} is not allowed: list its URL prefix "
                             "in [jobs] webhook_allow")
        delays = list(options.retry_delays or self._config.retry_delays)
        spec = JobSpec(
            id=new_job_id(), name=options.name,
            webhook=options.webhook,
            retry_delays=delays,
            retry_horizon=options.retry_horizon or self._config.retry_horizon,
            total=len(addresses), created_at=self._clock(),
        )
        await self.queue.submit(spec, work_items(spec.id, addresses, self._per_item))
        return spec

    async def status(self, job_id: str) -> JobStatus | None:
        return await self.queue.status(job_id, self._clock())

    async def cancel(self, job_id: str) -> JobState | None:
        return await self.queue.cancel(job_id, self._clock())

    async def recent(self) -> list[JobStatus]:
        return await self.queue.recent(self._clock(), RECENT_JOBS)

    async def results(self, job_id: str, total: int, as_csv: bool) -> AsyncIterator[bytes]:
        """Each final verdict so far, in input order, one line each."""
        if as_csv:
            yield (csv_line([*CSV_COLUMNS, "attempts"]) + "\n").encode()
        for start in range(0, total, RESULTS_AT_ONCE):
            lines = await self.queue.results(job_id, start, RESULTS_AT_ONCE)
            if as_csv:
                chunk = []
                for _, line in lines:
                    verdict = JobVerdict.model_validate_json(line)
                    chunk.append(csv_line([*csv_cells(verdict), verdict.attempts]) + "\n")
                yield "".join(chunk).encode()
            else:
                yield "".join(line + "\n" for _, line in lines).encode()
