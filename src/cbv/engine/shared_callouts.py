"""Who calls out for an address: one request in this process leads, the others await it;
across processes, a lock decides and the others read the verdict the holder stored.
Refreshes of stale cached verdicts run here too, in the background."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from cbv.address import Address
from cbv.callout.deadlines import NO_VARIABLES
from cbv.callout.pacer import TurnPacer
from cbv.callout.runner import CALLOUTS_PER_TURN
from cbv.engine.limited_callout import LimitedCallout
from cbv.engine.singleflight import LocalFlights, SharedLocks
from cbv.engine.verdict_store import VerdictStore
from cbv.model import Verdict

log = logging.getLogger("cbv.engine")


def _without(addresses: list[Address], known: dict[Address, Verdict]) -> list[Address]:
    """Out of `SharedCallouts._lead`: a comprehension there made `verdicts` a cell that
    every callout in flight kept."""
    return [address for address in addresses if address not in known]


class SharedCallouts:
    """Single-flight in front of `LimitedCallout`; safe to share across tasks of one loop."""

    def __init__(
        self,
        callout: LimitedCallout,
        store: VerdictStore,
        locks: SharedLocks,
        flights: LocalFlights,
    ) -> None:
        self._callout = callout
        self._store = store
        self._locks = locks
        self._flights = flights
        self._background: set[asyncio.Task[None]] = set()
        self._refreshing: set[Address] = set()
        self._pacer = TurnPacer(CALLOUTS_PER_TURN)

    async def aclose(self) -> None:
        """Stop the refreshes and leads still running in the background."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def resolve(
        self, addresses: list[Address], transcript: bool, use_cache: bool
    ) -> dict[Address, Verdict]:
        """Join the callouts in flight for these addresses, lead one for the rest.

        A wave of misses (thousands of `verify()` calls at once) starts over several
        event-loop turns: each start walks the engine down to the runner, and 10,000 of
        them in one turn held the loop for 0.2 s (callout/pacer.py)."""
        await self._pacer.take_turn()
        if transcript:  # the caller asked for its own dialogue: nothing to share
            return await self._callout.run(addresses, transcript=True, use_cache=use_cache)
        waiting: dict[Address, asyncio.Future[Verdict]] = {}
        led: list[Address] = []
        for address in addresses:
            waiting[address] = self._flights.join(address) or self._lead_flight(address, led)
        if led:
            self._spawn(self._lead(led, use_cache))
        verdicts: dict[Address, Verdict] = {}
        for address, flight in waiting.items():  # no async comprehension: a coroutine more
            verdicts[address] = await flight     # per callout in flight (~600 bytes)
        return verdicts

    async def verdict_of(self, address: Address, transcript: bool, use_cache: bool) -> Verdict:
        """`resolve` for one address, as `Verifier.verify` asks: no list, dict or iterator
        kept while the callout is in flight (~400 bytes a callout)."""
        await self._pacer.take_turn()
        if transcript:
            verdicts = await self._callout.run([address], transcript=True, use_cache=use_cache)
            return verdicts[address]
        flight = self._flights.join(address)
        if flight is None:
            flight = self._flights.lead(address)
            self._spawn(self._lead([address], use_cache), flight.get_loop())
        return await flight

    def _lead_flight(self, address: Address, led: list[Address]) -> asyncio.Future[Verdict]:
        led.append(address)
        return self._flights.lead(address)

    def refresh_in_background(self, address: Address) -> None:
        """Renew a cached verdict past its refresh time, unless that is already under way."""
        if address in self._refreshing or self._flights.is_flying(address):
            return
        self._refreshing.add(address)
        self._spawn(self._refresh(address))

    async def _refresh(self, address: Address) -> None:
        try:
            await self.verdict_of(address, transcript=False, use_cache=True)
        except Exception:
            log.exception("background refresh of %s failed", address)
        finally:
            self._refreshing.discard(address)

    def _spawn(self, work: Coroutine[Any, Any, None],
               loop: asyncio.AbstractEventLoop | None = None) -> None:
        """`loop`: the running one, when at hand (asking is a system call on 3.11)."""
        task = (loop or asyncio.get_running_loop()).create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard, context=NO_VARIABLES)

    async def _lead(self, addresses: list[Address], use_cache: bool) -> None:
        """Runs as its own task, so a caller that goes away does not cancel the others.

        With `use_cache`, calls out only for the addresses no other process is verifying,
        after one more look (a verdict may have landed since the request's), and takes the
        others' verdicts from the cache once they land. One coroutine frame while the
        callout is in flight: each is memory and a step on every wake-up of every callout
        in flight."""
        theirs: asyncio.Future[list[dict[Address, Verdict]]] | None = None
        try:
            if not use_cache:
                verdicts = await self._callout.run(addresses, transcript=False, use_cache=False)
            else:
                claimed, elsewhere = await self._locks.claim(addresses)
                if elsewhere:
                    theirs = asyncio.gather(*map(self._after_elsewhere, elsewhere))
                del elsewhere  # not kept while the callout is in flight
                try:
                    verdicts = await self._store.fresh(
                        claimed, from_elsewhere=self._locks.spans_processes) if claimed else {}
                    todo = _without(claimed, verdicts) if verdicts else claimed
                    if todo:
                        verdicts.update(
                            await self._callout.run(todo, transcript=False, use_cache=True))
                finally:
                    await self._locks.release(claimed)
                if theirs is not None:
                    for part in await theirs:
                        verdicts.update(part)
        except BaseException as exc:
            if theirs is not None:
                theirs.cancel()  # the flights fail as a whole
            for address in addresses:
                self._flights.fail(address, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for address in addresses:
            self._flights.land(address, verdicts[address])

    async def _after_elsewhere(self, address: Address) -> dict[Address, Verdict]:
        """Another process verifies `address`: take its verdict, or call out if none landed."""
        await self._locks.wait(address)
        verdict = await self._store.stored(address)
        if verdict is not None:
            return {address: verdict}
        return await self._callout.run([address], transcript=False, use_cache=True)
