"""Concurrent requests for one address share one callout."""

from __future__ import annotations

import asyncio
from collections import Counter
from itertools import pairwise

import pytest

from cbv.address import Address
from cbv.cache.memory import MemoryBackend
from cbv.cache.records import CachedVerdict
from cbv.callout.runner import CALLOUTS_PER_TURN
from cbv.engine.observer import NoObserver
from cbv.engine.singleflight import ProcessLocks
from cbv.engine.verifier import Verifier
from cbv.model import Result
from cbv.testing import MXScript, Reply
from tests.waiting import at_rcpt, until
from tests.world import World

ALICE = "alice@example.test"
OK = Reply(250, "2.1.5 Ok")


async def test_a_thousand_concurrent_requests_make_one_rcpt(world: World) -> None:
    farm = await world.mx("example.test", {"127.0.0.2": MXScript(rcpt=[("alice@*", OK)])})
    async with Verifier(world.config()) as verifier:
        verdicts = await asyncio.gather(*(verifier.verify(ALICE) for _ in range(1_000)))
    mx = farm.servers["127.0.0.2"]
    assert mx.rcpts.count(ALICE) == 1
    assert mx.connections == 1
    assert {(v.result, v.checked_at) for v in verdicts} == {(Result.PASS, verdicts[0].checked_at)}


async def test_overlapping_batches_and_single_requests_share_callouts(world: World) -> None:
    farm = await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    addresses = [f"user{n}@example.test" for n in range(60)]
    async with Verifier(world.config(limits={"domain_burst": 100})) as verifier:
        await asyncio.gather(
            verifier.verify_many(addresses),
            verifier.verify_many(list(reversed(addresses))),
            *(verifier.verify(address) for address in addresses[::3]),
        )
    seen = Counter(farm.servers["127.0.0.2"].rcpts)
    assert all(seen[address] == 1 for address in addresses)


class CacheLookups(NoObserver):
    def __init__(self) -> None:
        self.count = 0

    def cache_lookup(self, hit: bool) -> None:
        self.count += 1


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_callout(world: World) -> None:
    script = MXScript(rcpt=[("alice@*", OK)], delays={"rcpt": 0.3})
    mx = (await world.mx("example.test", {"127.0.0.2": script})).servers["127.0.0.2"]
    lookups = CacheLookups()
    async with Verifier(world.config(), observer=lookups) as verifier:
        impatient = asyncio.create_task(verifier.verify(ALICE))
        await until(lambda: at_rcpt(mx), "the first caller's callout is at RCPT")
        patient = asyncio.create_task(verifier.verify(ALICE))
        # A miss in the cache is followed, with no pause, by joining the flight.
        await until(lambda: lookups.count == 2, "the second caller looked in the cache")
        impatient.cancel()
        verdict = await patient
    assert verdict.result is Result.PASS
    assert mx.rcpts.count(ALICE) == 1


class CalloutStarts(NoObserver):
    def __init__(self) -> None:
        self.count = 0

    def callout_started(self) -> None:
        self.count += 1


async def test_a_wave_of_misses_starts_its_callouts_a_few_per_turn(world: World) -> None:
    farm = await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    addresses = [f"user{n}@example.test" for n in range(3 * CALLOUTS_PER_TURN)]
    starts = CalloutStarts()
    config = world.config(limits={"domain_burst": 1_000})
    async with Verifier(config, observer=starts) as verifier:
        wave = asyncio.gather(*(verifier.verify(address) for address in addresses))
        started_by_turn = [0]
        while not wave.done():
            await asyncio.sleep(0)
            started_by_turn.append(starts.count)
        verdicts = await wave
    assert max(b - a for a, b in pairwise(started_by_turn)) <= CALLOUTS_PER_TURN
    assert starts.count == len(addresses)
    assert {v.result for v in verdicts} == {Result.PASS}
    assert set(addresses) <= set(farm.servers["127.0.0.2"].rcpts)


class CountedCache(MemoryBackend):
    """Counts the looks that may leave the process (for SQLite, a trip to its reader)."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, address: Address) -> CachedVerdict | None:
        self.gets += 1
        return await super().get(address)


class LocksOfManyProcesses(ProcessLocks):
    """Claims succeed, as with Redis when no other process holds the address."""

    spans_processes = True


@pytest.mark.parametrize(("locks", "looks"), [(ProcessLocks(), 1), (LocksOfManyProcesses(), 2)])
async def test_the_cache_is_asked_again_before_a_callout_only_across_processes(
    world: World, locks: ProcessLocks, looks: int
) -> None:
    """Alone, a verdict that landed since the request's look landed in this process's
    memory; with other processes calling out, only the cache can tell."""
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt=[("alice@*", OK)])})
    cache = CountedCache()
    async with Verifier(world.config(), cache=cache, locks=locks) as verifier:
        verdict = await verifier.verify(ALICE)
    assert verdict.result is Result.PASS
    assert cache.gets == looks
