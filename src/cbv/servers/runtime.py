"""What one loaded configuration builds, and the swap a reload makes.

A `Generation` holds the config, its Verifier and site policy, and the callouts started
for requests. Each request runs on the generation current when it arrived; a reload puts
a new one in place and closes the old one once its work in flight is done, so
connections stay up and no answer is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cbv.callout.runner import for_recipient
from cbv.config import Config
from cbv.engine.assembly import assemble
from cbv.engine.verifier import Verifier
from cbv.model import Verdict
from cbv.policy import Check, Decision, RequestContext, SitePolicy, Skip
from cbv.servers.logs import event, failure
from cbv.servers.metrics import Telemetry

if TYPE_CHECKING:
    from cbv.jobs.service import JobService

LOG = logging.getLogger("cbv.server")
MESSAGES_REMEMBERED = 10_000  # (message, address) pairs whose callout later requests share


@dataclass(slots=True)
class Verifying:
    """A request whose callout it runs itself, or shares with its message's first request."""

    check: Check
    outcome: asyncio.Future[Verdict]
    runs_it: bool


@dataclass(slots=True)
class Answered:
    decision: Decision | None  # None: not a request cbv acts on (CONNECT, DATA, ...)
    verdict: Verdict | None  # None: excluded, still in progress, or cbv failed


class Generation:
    """One loaded configuration: its verifier, its site policy, its callouts in flight."""

    def __init__(self, config: Config, telemetry: Telemetry) -> None:
        self.config = config
        self.verifier = Verifier(assemble(config, observer=telemetry.engine(config)))
        self.policy = SitePolicy(config.policy, self.verifier.senders)
        self._by_message: OrderedDict[tuple[str, str], asyncio.Future[Verdict] | Verdict] = (
            OrderedDict())
        self._running: dict[asyncio.Future[Verdict], asyncio.Task[object] | None] = {}
        self._users = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def answer_at_once(self, context: RequestContext, message_id: str = "") -> Answered | None:
        """The answer when it needs no waiting: nothing to verify, the message's verdict
        already in, or one the cache holds in memory. None: `begin` it."""
        planned = self.policy.plan(context)
        if isinstance(planned, Skip):
            return Answered(planned.decision, None)
        return self._held(planned, message_id)

    def begin(self, context: RequestContext, message_id: str = "") -> Answered | Verifying:
        """Plan the request; the callout is its own, or the one its message already has."""
        planned = self.policy.plan(context)
        if isinstance(planned, Skip):
            return Answered(planned.decision, None)
        held = self._held(planned, message_id)
        if held is not None:
            return held
        key = (message_id, planned.address)
        shared = self._by_message.get(key) if message_id else None
        if isinstance(shared, asyncio.Future):
            return Verifying(planned, shared, runs_it=False)
        outcome: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        if message_id:
            self._share(key, outcome)
        return Verifying(planned, outcome, runs_it=True)

    def _held(self, planned: Check, message_id: str) -> Answered | None:
        """Decided on the verdict the message already has, or on one the cache holds in
        memory (no future, no coroutine); None when a callout is under way or needed."""
        key = (message_id, planned.address)
        shared = self._by_message.get(key) if message_id else None
        if shared is None:
            shared = self.verifier.cached(planned.address, planned.recipient)
            if shared is None:
                return None
            if message_id:
                self._share(key, shared)
        if not isinstance(shared, Verdict):
            return None  # the message's callout is under way
        return Answered(self.policy.decide(planned, shared), shared)

    def _share(self, key: tuple[str, str], outcome: asyncio.Future[Verdict] | Verdict) -> None:
        """The message's later requests for the same address take this verdict."""
        self._by_message[key] = outcome
        if len(self._by_message) > MESSAGES_REMEMBERED:
            self._by_message.popitem(last=False)

    async def finish(self, verifying: Verifying) -> Answered:
        """The decision once the callout is done; cbv's own failure is decided, not raised.

        The callout runs in the request's own task, so a cached verdict costs no task
        switch; the connection answers a slow one late and lets this task finish it.
        """
        try:
            if verifying.runs_it:
                verdict = await self._run(verifying)
            else:
                verdict = await asyncio.shield(verifying.outcome)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if verifying.runs_it or task is None or task.cancelling():
                raise
            return self._failed(verifying)  # the request running it was cut short
        except Exception:  # logged once, by the request that ran the callout
            return self._failed(verifying)
        return Answered(self.policy.decide(verifying.check, verdict), verdict)

    def _failed(self, verifying: Verifying) -> Answered:
        fail_open = self.config.server.fail_open
        return Answered(self.policy.decide_error(verifying.check, fail_open, "internal_error"),
                        None)

    def in_progress(self, verifying: Verifying) -> Answered:
        """The answer while the callout outlives answer_within; it goes on regardless."""
        return Answered(self.policy.decide_pending(verifying.check), None)

    async def _run(self, verifying: Verifying) -> Verdict:
        outcome = verifying.outcome
        self._running[outcome] = asyncio.current_task()
        try:
            with for_recipient(verifying.check.recipient):
                verdict = await self.verifier.verify(verifying.check.address)
        except Exception as exc:
            failure(LOG, "verification failed", exc)
            if not outcome.done():
                outcome.set_exception(exc)
                outcome.exception()  # seen: the requests sharing it decide on it
            raise
        except BaseException:
            outcome.cancel()
            raise
        finally:
            del self._running[outcome]
        if not outcome.done():
            outcome.set_result(verdict)
        return verdict

    async def settle(self) -> None:
        """Until no callout started for a request is still running."""
        while self._running:
            await asyncio.wait(set(self._running))

    def __enter__(self) -> Generation:
        """`with runtime.generation as generation:` holds it for one request."""
        self._users += 1
        self._idle.clear()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._users -= 1
        if not self._users:
            self._idle.set()

    async def close(self, grace: float) -> None:
        """Let requests and callouts in flight finish (within `grace` seconds), then close
        the verifier, which flushes its cache."""
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
                await self.settle()
        except TimeoutError:
            event(LOG, logging.WARNING, "callouts cut short", count=len(self._running))
            running = {task for task in self._running.values() if task is not None}
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
        await self.verifier.aclose()


class Runtime:
    """The current generation, the retired ones still finishing their work, and the
    telemetry every listener reports its answers to."""

    def __init__(self, generation: Generation, telemetry: Telemetry) -> None:
        self.generation = generation
        self.telemetry = telemetry
        self.jobs: JobService | None = None  # set by the daemon when [jobs] enabled = true
        self._retiring: set[asyncio.Task[None]] = set()

    def replace(self, new: Generation) -> None:
        old, self.generation = self.generation, new
        patience = old.config.callout.total_timeout + old.config.server.answer_within
        task = asyncio.get_running_loop().create_task(old.close(patience))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self, grace: float) -> None:
        await self.generation.close(grace)
        if self._retiring:
            _, late = await asyncio.wait(set(self._retiring), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
