"""The daemon's part in bulk jobs: the queue it opens, the worker it runs on the current
configuration's Verifier, and the service the HTTP API answers /v1/jobs with."""

from __future__ import annotations

import asyncio
import logging
import random

from cbv.callout.plan import Target
from cbv.config import Config, ConfigError
from cbv.jobs.opening import open_queue
from cbv.jobs.queue import QueueError
from cbv.jobs.service import JobService
from cbv.jobs.webhook import notify
from cbv.jobs.worker import JobWorker
from cbv.model import Verdict
from cbv.servers.logs import event
from cbv.servers.runtime import Runtime

LOG = logging.getLogger("cbv.jobs")
MIN_BUDGET_WAIT = 1.0


class JobsRunning:
    """Started with the daemon when `[jobs] enabled = true`; stopped before its verifier."""

    def __init__(self, runtime: Runtime, config: Config) -> None:
        try:
            self._queue = open_queue(config)
        except QueueError as exc:
            raise ConfigError(f"jobs.queue: {exc}") from None
        self._runtime = runtime
        self.service = JobService(self._queue, config.jobs,
                                  per_item=config.callout.max_rcpts_per_session)
        self._worker = JobWorker(self._queue, self._verify,
                                 concurrency=config.jobs.concurrency, lease=config.jobs.lease,
                                 budget_wait=self._budget_wait, notify=notify,
                                 observer=runtime.telemetry.jobs())
        self._task = asyncio.get_running_loop().create_task(self._worker.run())
        event(LOG, logging.INFO, "job worker started", queue=self._queue.description())

    async def _verify(self, addresses: list[str], use_cache: bool) -> list[Verdict]:
        with self._runtime.generation as generation:
            return await generation.verifier.verify_many(addresses, use_cache=use_cache)

    async def _budget_wait(self, limited: Verdict) -> float:
        """When the MX address the verdict names frees (its budgets, its cooldown), as the
        destination gate says; else one interval of the domain's rate. The jitter keeps the
        items waiting on one destination from all coming back at the same moment."""
        generation = self._runtime.generation
        domain = limited.address.rpartition("@")[2].lower()
        wait = 60.0 / generation.config.limits.domain_rate(domain)
        if limited.mx and limited.ip and limited.port:
            target = Target(limited.mx, limited.ip, limited.port)
            wait = max(wait, await generation.verifier.gate.free_in(target))
        return max(wait, MIN_BUDGET_WAIT) * (1 + random.random())

    async def close(self, grace: float) -> None:
        """Items in hand are settled within `grace` seconds, or left to other workers."""
        await self._worker.stop(grace)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._queue.aclose()
