"""The collector's clock: young objects collected every few milliseconds, whatever the
allocation count says, the older generations on CPython's schedule."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Iterator

import pytest

from cbv.gc_clock import COLLECT_EVERY, IDLE_EVERY, HeapGrowth, collect_on_a_clock, generation_due
from cbv.gc_tuning import MIDDLE_THRESHOLD, OLD_THRESHOLD
from tests.collector import count_never_due, cycle_freed


@pytest.fixture(name="count_never_due")
def count_never_due_fixture() -> Iterator[None]:
    with count_never_due():
        yield


@pytest.mark.usefixtures("count_never_due")
async def test_the_clock_collects_what_the_count_would_leave() -> None:
    gc.collect()
    freed = cycle_freed()
    clock = asyncio.create_task(collect_on_a_clock())
    try:
        async with asyncio.timeout(5):
            await freed.wait()
    finally:
        clock.cancel()


def test_the_generation_due_follows_cpythons_schedule() -> None:
    gc.collect()
    heap = HeapGrowth()
    assert generation_due(heap) == 0
    for _ in range(MIDDLE_THRESHOLD + 1):
        gc.collect(0)
    assert generation_due(heap) == 1
    gc.collect(1)
    assert generation_due(heap) == 0


@pytest.mark.usefixtures("count_never_due")
def test_the_whole_heap_is_collected_only_once_it_has_grown() -> None:
    gc.collect()
    heap = HeapGrowth(at_most_every=0.0)
    for _ in range(OLD_THRESHOLD + 1):
        gc.collect(1)
    assert generation_due(heap) == 0  # due by the count, but the heap held steady
    grown = [[n] for n in range(sys.getallocatedblocks() // 2)]
    assert generation_due(heap) == 2
    assert generation_due(HeapGrowth()) == 0  # not twice within FULL_EVERY
    gc.collect(2)
    assert generation_due(heap) == 0
    assert grown


async def test_an_idle_process_is_looked_at_less_and_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 9:
            raise asyncio.CancelledError

    monkeypatch.setattr(gc, "get_count", lambda: (5, 0, 0))  # nothing made or freed
    monkeypatch.setattr(asyncio, "sleep", sleep)
    with pytest.raises(asyncio.CancelledError):
        await collect_on_a_clock()
    assert waits == [COLLECT_EVERY * 2**n for n in range(6)] + [IDLE_EVERY] * 3


async def test_a_tick_after_cpython_collected_on_its_own_adds_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = 0
    collected: list[int] = []

    async def sleep(seconds: float) -> None:
        nonlocal ticks
        ticks += 1
        if ticks % 2:
            real_collect(0)  # CPython's own, between two ticks
        if ticks == 6:
            raise asyncio.CancelledError

    def collect(generation: int = 2) -> int:
        collected.append(generation)
        return 0

    real_collect = gc.collect
    counts = iter(range(1_000))
    monkeypatch.setattr(gc, "get_count", lambda: (next(counts), 0, 0))  # always changing
    monkeypatch.setattr(gc, "collect", collect)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    with pytest.raises(asyncio.CancelledError):
        await collect_on_a_clock()
    assert collected == [0, 0]  # the ticks after the 2nd and 4th sleeps; not the others
